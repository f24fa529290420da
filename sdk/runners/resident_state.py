"""Ping-pong state buffers for :class:`sdk.runners.host_stepper.HostStateStepper`.

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

Shapes: every per-step input and output has the batch B first (features float32 (B, Tc,
F), noise float32 (B, Tc, N), ...); state rows are float32 (S,).
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

Arrays = dict[str, np.ndarray]
RunStep = Callable[[Arrays, np.ndarray], tuple[Arrays, np.ndarray]]
"""(inputs, state) -> (outputs, state_out): one checked, unbound step. ``inputs`` are the
model's per-step inputs but the state (features, noise, ...), ``outputs`` its outputs but
``state_out``."""
BindStep = Callable[[Arrays, np.ndarray, Arrays, np.ndarray], Callable[[], None]]
"""(inputs, state, outputs, state_out) -> a call running the model on those arrays."""


@dataclass
class _Group:
    """One batch of slots whose latest state lives in ``states[current]``."""

    index: np.ndarray  # int64 (B,) the slots, for the table
    inputs: Arrays  # bound inputs, refilled every step
    states: tuple[np.ndarray, np.ndarray]  # float32 (B, S) each
    outputs: Arrays  # bound outputs, overwritten every step
    calls: tuple[Callable[[], None], Callable[[], None]]  # calls[i]: states[i] -> [1 - i]
    current: int
    used: int

    def __post_init__(self) -> None:
        # (name, buffer, shape, dtype) per bound input: refill runs every step of every
        # resident group, and reading these off the buffers each time costs more than the
        # copies of a one-stream step
        self._specs = tuple((name, b, b.shape, b.dtype) for name, b in self.inputs.items())

    def refill(self, inputs: Arrays) -> bool:
        """Copy ``inputs`` into the bound buffers if they fit (same names, shapes and
        dtypes); False if not (a buffer may then hold part of them: every step refills
        them before running, and the state is not among them)."""
        if len(inputs) != len(self._specs):
            return False
        for name, buffer, shape, dtype in self._specs:
            value = inputs.get(name)
            if value is None or value.shape != shape or (value.dtype is not dtype
                                                         and value.dtype != dtype):
                return False
            buffer[...] = value
        return True


class ResidentStates:
    """The resident groups of one stepper (see the module docstring).

    Args:
        run: one checked step without bound buffers (a batch's first and second steps).
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

    def step(self, table: np.ndarray, inputs: Arrays, slots: tuple[int, ...]) -> Arrays:
        """One step of ``slots`` (distinct, live rows of ``table``) on ``inputs`` (B rows
        each); returns the outputs but ``state_out``, views of buffers that the next step
        of the same batch overwrites."""
        self._clock += 1
        group = self._groups.get(slots)
        if group is not None and group.refill(inputs):
            group.used = self._clock
            group.calls[group.current]()
            group.current ^= 1
            return group.outputs
        if slots in self._seen:
            self._seen.discard(slots)
            return self._first_step(table, inputs, slots)
        if len(self._seen) >= _SEEN_LIMIT:
            self._seen.clear()
        self._seen.add(slots)
        return self._plain_step(table, inputs, slots)

    def _plain_step(self, table: np.ndarray, inputs: Arrays, slots: tuple[int, ...]
                    ) -> Arrays:
        """Gather, run, scatter (after writing back the groups that hold these slots);
        the outputs are the runner's (valid until its next run)."""
        self._flush_overlapping(table, slots)
        index = np.asarray(slots, dtype=np.int64)
        outputs, state_out = self._run(inputs, table[index])
        table[index] = state_out
        return outputs

    def _flush_overlapping(self, table: np.ndarray, slots: tuple[int, ...]) -> None:
        for key in {self._owner[s] for s in slots if s in self._owner}:
            self._flush_group(table, key)

    def _first_step(self, table: np.ndarray, inputs: Arrays, slots: tuple[int, ...]
                    ) -> Arrays:
        """A new group: flush what shares its slots, run once the checked way (the feed is
        validated, the output shapes learnt), then bind both directions."""
        self._flush_overlapping(table, slots)
        index = np.asarray(slots, dtype=np.int64)
        outputs, state_out = self._run(inputs, table[index])
        latest = np.array(state_out, dtype=np.float32)
        states = (latest, np.empty_like(latest))
        group = _Group(index, {k: np.array(v) for k, v in inputs.items()}, states,
                       {k: np.array(v) for k, v in outputs.items()},
                       calls=(_unbound, _unbound), current=0, used=self._clock)
        if len(slots) > self.max_rows:  # never resident: the state goes to the table
            table[index] = states[0]
            return group.outputs
        group.calls = (self._bind(group.inputs, states[0], group.outputs, states[1]),
                       self._bind(group.inputs, states[1], group.outputs, states[0]))
        while self._owner and len(self._owner) + len(slots) > self.max_rows:
            oldest = min(self._groups.items(), key=lambda item: item[1].used)[0]
            self._flush_group(table, oldest)
        self._groups[slots] = group
        self._owner.update((s, slots) for s in slots)
        return group.outputs

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
