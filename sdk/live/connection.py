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
  While the sink is set and websockets' parser stands between two frames (the bytes fed
  to it equal the request's plus those of the frames it returned), whole masked binary
  frames under 64 KiB at the start of the received bytes are unmasked here (websockets'
  ``apply_mask``) instead of by its generator-based parser; the first byte that is not
  such a frame, and all after it, go to websockets' parser as before. A frame cut by
  TCP waits here for its rest (< 64 KiB).
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

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask

_FIN_BINARY = 0x82  # first header byte of an unfragmented binary frame, no extension bits
_MASK_BIT = 0x80
_MASK_BYTES = 4


def frame_bytes(payload: int) -> int:
    """Bytes of a masked client frame with a ``payload``-byte payload (RFC 6455 5.2, the
    shortest length encoding)."""
    return 2 + _MASK_BYTES + payload + (0 if payload < 126 else 2 if payload < 1 << 16 else 8)


class AudioConnection(ServerConnection):
    """A :class:`~websockets.asyncio.server.ServerConnection` with the fast paths above."""

    #: Called with each complete binary message's payload (bytes) while set; may pause
    #: reading (:meth:`pause_reading`).
    audio_sink: Callable[[bytes], None] | None = None
    #: False once a data frame of another kind came: the fast path is off for good.
    fast_path_allowed: bool = True
    #: Audio messages unmasked by :meth:`_audio_frames` rather than websockets' parser.
    messages_parsed_here: int = 0
    _fed: int = 0  # bytes given to websockets' parser
    _parsed: int = -1  # bytes of the request and of the frames it returned (-1: unknown yet)
    _request_tail: bytes = b""  # the last bytes before the request's end was found
    _partial: bytes = b""  # an audio frame's first bytes, until the rest arrives

    def data_received(self, data: bytes) -> None:
        if self._parsed < 0:  # the handshake request (a GET: no body) ends at a blank line
            seen = self._request_tail + data
            end = seen.find(b"\r\n\r\n")
            if end >= 0:
                self._parsed = self._fed - len(self._request_tail) + end + 4
            else:
                self._request_tail = seen[-3:]
        if self._partial:  # the start of an audio frame, held back (not yet fed to anyone)
            data, self._partial = self._partial + data, b""
        if self.audio_sink is not None and self._fed == self._parsed \
                and self.protocol.state is State.OPEN:
            taken, incomplete = self._audio_frames(data)
            self._fed += taken
            self._parsed += taken
            if incomplete and self.audio_sink is not None:
                self._partial = data[taken:]  # < 64 KiB: the rest of the frame comes next
                return
            if taken:
                if taken == len(data):
                    return
                data = data[taken:]
        self._fed += len(data)
        super().data_received(data)

    def _audio_frames(self, data: bytes) -> tuple[int, bool]:
        """Hand the whole binary frames at the start of ``data`` to the sink: (bytes taken,
        whether the rest is the start of such a frame, to complete with the next bytes)."""
        offset, size = 0, len(data)
        while self.audio_sink is not None and offset < size:
            if data[offset] != _FIN_BINARY:
                return offset, False
            if size - offset < 2 + _MASK_BYTES:
                break
            if not data[offset + 1] & _MASK_BIT or data[offset + 1] & 0x7F == 127:
                return offset, False  # unmasked (an error) or 64 KiB or more: websockets
            length, head = data[offset + 1] & 0x7F, offset + 2
            if length == 126:
                length, head = int.from_bytes(data[head:head + 2], "big"), head + 2
            end = head + _MASK_BYTES + length
            if end > size:
                break
            payload = apply_mask(data[head + _MASK_BYTES:end], data[head:head + _MASK_BYTES])
            offset = end
            self.messages_parsed_here += 1
            self.audio_sink(payload)
        return offset, offset < size and self.audio_sink is not None

    def process_event(self, event: object) -> None:
        if isinstance(event, Frame) and self._parsed >= 0:
            self._parsed += frame_bytes(len(event.data))
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
