"""Ping-pong state buffers for :class:`sdk.runners.base.HostStateStepper`.

A host stepper keeps every stream's state in a table, float32 (slots, S). Stepping a batch
the plain way costs, per call, a gather of the batch's rows into a fresh (B, S) input, a
fresh feed dictionary and output arrays, and a scatter of ``state_out`` back -- at one
stream that is more Python and copying than the one-frame step model itself.

A server often steps the *same* streams in the same order frame after frame. So a batch
(its tuple of slots) stepped a second time becomes a **resident group**: two bound (B, S)
state buffers A
and B, inputs and outputs bound once (:meth:`sdk.runners.base.Runner.bind`), and the
group's latest state lives in the buffers, not in the table. Step k reads A and writes B,
step k+1 reads B and writes A: no gather, no scatter, no per-call allocation or binding.
A batch seen for the first time takes the plain path (gather, run, scatter), so a server
whose ready set changes every tick pays nothing for the groups it cannot use. A group is
written back to the table ("flushed") and dropped when

* a step names another order or size of slots that shares a slot with it,
* a slot of it is read, reset or released (the stepper flushes before it touches a row),
* the groups together would hold more than ``max_rows`` streams (least recently used first).

Shapes: features float32 (B, Tc, F), noise float32 (B, Tc, N), state rows float32 (S,).
Not thread-safe: the stepper's caller serialises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

_SEEN_LIMIT = 256  # batches remembered as stepped once (forgotten all at once past this)

DEFAULT_MAX_ROWS = 1024
"""Most streams whose state lives in resident buffers (2 x S floats each: 45 KB per stream
for the default generator, 46 MB at this bound) before the oldest group is flushed."""

RunStep = Callable[[np.ndarray, np.ndarray, np.ndarray],
                   tuple[np.ndarray, np.ndarray, np.ndarray]]
"""(features, noise, state) -> (poses, saliency, state_out): one checked, unbound step."""
BindStep = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                    Callable[[], None]]
"""(features, noise, state, poses, saliency, state_out) -> a call running on those arrays."""


@dataclass
class _Group:
    """One batch of slots whose latest state lives in ``states[current]``."""

    index: np.ndarray  # int64 (B,) the slots, for the table
    features: np.ndarray  # bound inputs, refilled every step
    noise: np.ndarray
    states: tuple[np.ndarray, np.ndarray]  # float32 (B, S) each
    poses: np.ndarray  # bound outputs, overwritten every step
    saliency: np.ndarray
    calls: tuple[Callable[[], None], Callable[[], None]]  # calls[i]: states[i] -> [1 - i]
    current: int
    used: int


class ResidentStates:
    """The resident groups of one stepper (see the module docstring).

    Args:
        run: one checked step without bound buffers (the first step of a group).
        bind: binds a group's buffers (:meth:`sdk.runners.base.Runner.bind`).
        max_rows: most streams resident at once (>= 1).
    """

    def __init__(self, run: RunStep, bind: BindStep, max_rows: int = DEFAULT_MAX_ROWS
                 ) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        self._run, self._bind = run, bind
        self.max_rows = max_rows
        self._groups: dict[tuple[int, ...], _Group] = {}
        self._owner: dict[int, tuple[int, ...]] = {}  # slot -> the group holding its state
        self._seen: set[tuple[int, ...]] = set()  # batches stepped once the plain way
        self._clock = 0

    @property
    def resident_slots(self) -> int:
        """Streams whose latest state is in a group's buffers, not in the table."""
        return len(self._owner)

    def step(self, table: np.ndarray, features: np.ndarray, noise: np.ndarray,
             slots: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """One step of ``slots`` (distinct, live rows of ``table``): poses (B, Tc, J, 2) and
        saliency (B, Tc), views of the group's buffers (overwritten by its next step)."""
        self._clock += 1
        group = self._groups.get(slots)
        if group is not None and group.features.shape == features.shape \
                and group.noise.shape == noise.shape and group.features.dtype == features.dtype \
                and group.noise.dtype == noise.dtype:
            group.used = self._clock
            group.features[...] = features
            group.noise[...] = noise
            group.calls[group.current]()
            group.current ^= 1
            return group.poses, group.saliency
        if slots in self._seen:
            self._seen.discard(slots)
            return self._first_step(table, features, noise, slots)
        if len(self._seen) >= _SEEN_LIMIT:
            self._seen.clear()
        self._seen.add(slots)
        return self._plain_step(table, features, noise, slots)

    def _plain_step(self, table: np.ndarray, features: np.ndarray, noise: np.ndarray,
                    slots: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Gather, run, scatter (after writing back the groups that hold these slots);
        the outputs are the runner's (valid until its next run)."""
        self._flush_overlapping(table, slots)
        index = np.asarray(slots, dtype=np.int64)
        poses, saliency, state_out = self._run(features, noise, table[index])
        table[index] = state_out
        return poses, saliency

    def _flush_overlapping(self, table: np.ndarray, slots: tuple[int, ...]) -> None:
        for key in {self._owner[s] for s in slots if s in self._owner}:
            self._flush_group(table, key)

    def _first_step(self, table: np.ndarray, features: np.ndarray, noise: np.ndarray,
                    slots: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """A new group: flush what shares its slots, run once the checked way (the feed is
        validated, the output shapes learnt), then bind both directions."""
        self._flush_overlapping(table, slots)
        index = np.asarray(slots, dtype=np.int64)
        poses, saliency, state_out = self._run(features, noise, table[index])
        latest = np.array(state_out, dtype=np.float32)
        states = (latest, np.empty_like(latest))
        group = _Group(index, np.array(features), np.array(noise), states, np.array(poses),
                       np.array(saliency), calls=(_unbound, _unbound), current=0,
                       used=self._clock)
        if len(slots) > self.max_rows:  # never resident: the state goes to the table
            table[index] = states[0]
            return group.poses, group.saliency
        group.calls = (self._bind(group.features, group.noise, states[0], group.poses,
                                  group.saliency, states[1]),
                       self._bind(group.features, group.noise, states[1], group.poses,
                                  group.saliency, states[0]))
        while self._owner and len(self._owner) + len(slots) > self.max_rows:
            oldest = min(self._groups.items(), key=lambda item: item[1].used)[0]
            self._flush_group(table, oldest)
        self._groups[slots] = group
        self._owner.update((s, slots) for s in slots)
        return group.poses, group.saliency

    def flush(self, table: np.ndarray, slot: int | None = None) -> None:
        """Write back to ``table`` and drop the group holding ``slot`` (every group: None)."""
        if slot is None:
            for key in list(self._groups):
                self._flush_group(table, key)
        elif slot in self._owner:
            self._flush_group(table, self._owner[slot])

    def _flush_group(self, table: np.ndarray, key: tuple[int, ...]) -> None:
        group = self._groups.pop(key)
        table[group.index] = group.states[group.current]
        for slot in key:
            del self._owner[slot]


def _unbound() -> None:
    raise RuntimeError("a group larger than max_rows is never bound")
