"""The server side of one WebSocket: websockets' connection with a cheap path for audio.

At a few hundred real-time clients the server's event loop, not the model, is the
bottleneck: every client sends 50 audio messages a second, and websockets' general path
costs each one an assembler queue, a future, a wake-up of the connection's handler task
and the ``recv()`` machinery, and each frames message an ``asyncio.Queue`` hand-off to a
sender task and ``send()``'s context manager. :class:`AudioConnection` keeps the wire
protocol and websockets' parser, and shortens both paths:

* **In**: while :attr:`AudioConnection.audio_sink` is set, each complete (unfragmented)
  binary message is handed to it inside ``data_received``, in arrival order, without
  touching the handler task. The first data frame of any other kind (text, a fragment)
  clears the sink for good, so it and everything after it take the ordinary ``recv()``
  path, still in order. Set the sink only while nothing waits in the receive queue
  (:meth:`receive_queue_empty`), between two ``recv()`` calls.
* **Out**: :meth:`write_message` frames a message and writes it to the transport at once,
  without a task switch; the caller checks :meth:`can_write_now` first (open, not paused
  by the transport's flow control) and otherwise queues it for an awaited ``send()``.

Uses websockets' connection internals (``protocol``, ``send_data``, ``recv_messages``,
``paused``) of the asyncio implementation (websockets >= 14); tests/test_live_server.py
checks that audio takes this path and that frames stay exact.
"""

from __future__ import annotations

from collections.abc import Callable

from websockets.asyncio.server import ServerConnection
from websockets.frames import DATA_OPCODES, Frame, Opcode
from websockets.protocol import State


class AudioConnection(ServerConnection):
    """A :class:`~websockets.asyncio.server.ServerConnection` with the fast paths above."""

    #: Called with each complete binary message's payload (bytes) while set; may pause
    #: reading (:meth:`pause_reading`).
    audio_sink: Callable[[bytes], None] | None = None
    #: False once a data frame of another kind came: the fast path is off for good.
    fast_path_allowed: bool = True

    def process_event(self, event: object) -> None:
        sink = self.audio_sink
        if sink is not None and isinstance(event, Frame):
            if event.opcode is Opcode.BINARY and event.fin:
                data = event.data
                sink(data if isinstance(data, bytes) else bytes(data))
                return
            if event.opcode in DATA_OPCODES:  # text or a fragment: ordinary path from here on
                self.audio_sink = None
                self.fast_path_allowed = False
        super().process_event(event)  # type: ignore[arg-type]

    def receive_queue_empty(self) -> bool:
        """No message waits for ``recv()`` (then the sink may be set without reordering)."""
        return len(self.recv_messages.frames) == 0

    def pause_reading(self) -> None:
        """Stop reading the socket (TCP pushes back on the client); idempotent."""
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Read again, unless websockets' own receive queue holds reading paused."""
        if not self.recv_messages.paused and not self.transport.is_closing():
            self.transport.resume_reading()

    def can_write_now(self) -> bool:
        """Open and not held by flow control: :meth:`write_message` may write now."""
        return self.protocol.state is State.OPEN and not self.paused

    def write_message(self, message: str | bytes) -> bool:
        """Frame ``message`` (text for str, binary for bytes) and write it to the transport
        now; False (and the connection aborted, as ``send()`` does) if writing failed."""
        if isinstance(message, str):
            self.protocol.send_text(message.encode())
        else:
            self.protocol.send_binary(message)
        try:
            self.send_data()
        except Exception as exc:  # as websockets' send_context: note it, drop the connection
            self.set_connection_exc(exc)
            self.transport.abort()
            return False
        return True
