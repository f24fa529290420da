"""Limits and timing of ``gesturert serve`` (:class:`ServerConfig`); defaults documented in
docs/protocol.md ("Flow control and limits") and checked against it by a test."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerConfig:
    """Limits and timing of :class:`LiveServer` (seconds, bytes, frames)."""

    host: str = "127.0.0.1"
    port: int = 8765
    max_streams: int = 256
    # the pump's period: one client message (20 ms of audio) per tick; 33 ms held 96 real-time
    # clients at the latency goal on the 2-core machine, 20 ms held 128 (benchmarks/results/
    # 2core-amd-epyc/serve_tick33/serve.md and serve.md, one after the other)
    tick_seconds: float = 0.020
    max_message_bytes: int = 1 << 20
    max_backlog_seconds: float = 2.0
    max_outbound_frames: int = 150  # 10 s at 15 fps
    overload_seconds: float = 0.25
    start_timeout_seconds: float = 10.0
    close_timeout_seconds: float = 2.0
    drain_seconds: float = 10.0
    reuse_port: bool = False  # SO_REUSEPORT: several processes share one port
    socket_send_buffer_bytes: int | None = 1 << 16  # SO_SNDBUF per connection (None: OS's)
    # measure every stream's frames against the bundle's training pose range (end message,
    # /stats); off by default, it costs server CPU (docs/serving.md, measured)
    pose_range: bool = False

    def __post_init__(self) -> None:
        for name in ("max_streams", "max_message_bytes", "max_outbound_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"ServerConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("tick_seconds", "max_backlog_seconds", "overload_seconds",
                     "start_timeout_seconds", "close_timeout_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ServerConfig.{name} must be > 0, got {getattr(self, name)}")
