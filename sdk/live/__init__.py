"""Live serving: ``gesturert serve`` (WebSocket server + browser page) and its client.

Optional: needs the ``live`` extra (``pip install 'gesturert[live]'``, i.e. websockets);
``import sdk`` never imports this package. Modules:

* :mod:`sdk.live.protocol`: wire protocol v1 (numpy only; docs/protocol.md);
* :mod:`sdk.live.server`: :class:`~sdk.live.server.LiveServer`, the asyncio server;
* :mod:`sdk.live.config`: :class:`~sdk.live.config.ServerConfig`, its limits;
* :mod:`sdk.live.session`: one connection's stream, queues and latency;
* :mod:`sdk.live.client`: :func:`~sdk.live.client.stream_audio`, a file client;
* :mod:`sdk.live.cli`: the ``serve`` and ``client`` commands (light at import);
* ``static/``: the browser page served at ``/``.
"""
