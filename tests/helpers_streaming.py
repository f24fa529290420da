"""Driving a stream in the runtime tests: stepping it until it blocks, and feeding it a
whole sequence of chunks."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sdk import StreamingGenerator
from sdk.frames import PoseFrames
from sdk.streaming import Stream


def step_and_pop(gen: StreamingGenerator, stream: Stream) -> PoseFrames:
    """Step ``stream`` while it is ready; returns the frames it then holds."""
    while gen.is_ready(stream):
        gen.step([stream])
    return stream.pop_frames()


def run_chunks(gen: StreamingGenerator, chunks: Iterable[tuple[Any, int]], seed: int = 0,
               before_chunk: Callable[[int, Stream], None] | None = None) -> PoseFrames:
    """Feed ``chunks`` of (samples, rate) to a new stream, stepping after each; then end
    the input, step until done and return every frame. ``before_chunk(i, stream)`` runs
    before chunk ``i`` is offered."""
    parts = []
    with gen.create_stream(seed) as stream:
        for i, (samples, rate) in enumerate(chunks):
            if before_chunk is not None:
                before_chunk(i, stream)
            stream.accept_waveform(samples, rate)
            parts.append(step_and_pop(gen, stream))
        stream.input_finished()
        parts.append(step_and_pop(gen, stream))
        assert stream.is_done
    return PoseFrames.concatenate(parts, gen.num_joints)
