"""HostStateStepper: a generator step on any :class:`~sdk.runners.base.Runner`, the
streams' states kept in a host table (and in resident ping-pong buffers,
:mod:`sdk.runners.resident_state`, for batches stepped again).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from sdk.runners.base import (
    FEATURES,
    GENERATOR_INPUTS,
    NOISE,
    POSES,
    SALIENCY,
    STATE,
    STATE_OUT,
    STYLE,
    GeneratorStepper,
    Runner,
    RunnerError,
    SlotAllocator,
    StepOutputs,
)
from sdk.runners.resident_state import DEFAULT_MAX_ROWS, ResidentStates

_INT32 = np.dtype(np.int32)  # numpy's builtin dtypes are singletons: `is` is the fast test


class HostStateStepper(GeneratorStepper):
    """A :class:`GeneratorStepper` over any :class:`Runner`, with the state table in host memory.

    The table is float32 (capacity, S), grown by doubling. A batch of slots stepped again
    keeps its state in bound ping-pong buffers instead of the table
    (:mod:`sdk.runners.resident_state`: no gather, scatter or per-call allocation); the
    stepper writes it back before a row is read, reset or released. The runner must be
    active and is deactivated by :meth:`close`.

    Args:
        max_resident: most streams whose state lives in ping-pong buffers at once.
    """

    def __init__(self, runner: Runner, state_size: int, backend: str,
                 max_resident: int = DEFAULT_MAX_ROWS) -> None:
        if state_size <= 0:
            raise ValueError(f"state_size must be > 0, got {state_size}")
        self.runner = runner.activate()
        self.backend = backend
        self.state_size = state_size
        self._slots = SlotAllocator()
        self._table = np.zeros((8, state_size), dtype=np.float32)
        self._resident = ResidentStates(self._run_checked, self._bind_step, max_resident)
        # the last step's outputs and their StepOutputs: a resident group returns the same
        # buffers every step, so the same StepOutputs (its views) serves again
        self._last_outputs: tuple[dict[str, np.ndarray], StepOutputs] | None = None
        meta = self.runner.get_input_metadata()
        missing = [n for n in GENERATOR_INPUTS if n not in meta]
        if missing:
            raise RunnerError(
                f"{runner.name}: the generator model lacks inputs {missing}; it has "
                f"{list(meta)} (see the step contract in docs/architecture.md)"
            )
        self.styled = STYLE in meta

    @property
    def launch_bound(self) -> bool:
        """ONNX Runtime's CUDA provider steps on a GPU (GeneratorStepper.launch_bound)."""
        return self.backend == "onnxruntime-gpu"

    def allocate_slot(self) -> int:
        slot = self._slots.allocate()  # never resident: released slots were written back
        if slot >= self._table.shape[0]:
            grown = np.zeros((2 * self._table.shape[0], self.state_size), dtype=np.float32)
            grown[: self._table.shape[0]] = self._table
            self._table = grown
        self._table[slot] = 0.0
        return slot

    def release_slot(self, slot: int) -> None:
        self._slots.check_live(slot)
        self._resident.flush(self._table, slot)
        self._slots.release(slot)

    def reset_slot(self, slot: int) -> None:
        self._slots.check_live(slot)
        self._resident.flush(self._table, slot)
        self._table[slot] = 0.0

    def read_state(self, slot: int) -> np.ndarray:
        self._slots.check_live(slot)
        self._resident.flush(self._table, slot)
        return self._table[slot].copy()

    def step(self, features: np.ndarray, noise: np.ndarray, slots: Sequence[int],
             styles: np.ndarray | None = None) -> StepOutputs:
        rows = tuple(map(int, slots))
        batch = len(rows)
        if batch != features.shape[0] or (batch > 1 and len(set(rows)) != batch):
            self._check_slots(slots, features.shape[0])  # raises, saying which
        if not self._slots.all_live(rows):
            for slot in rows:
                self._slots.check_live(slot)  # raises for the first one not allocated
        if self.styled and type(styles) is np.ndarray and styles.dtype is _INT32 \
                and styles.shape == (batch,):  # the common case, as _style_feed takes it
            inputs = {FEATURES: features, NOISE: noise, STYLE: styles}
        else:
            inputs = {FEATURES: features, NOISE: noise} | self._style_feed(self.styled, styles,
                                                                           len(rows))
        out = self._resident.step(self._table, inputs, rows)
        last = self._last_outputs
        if last is not None and last[0] is out:  # a resident group's buffers again
            return last[1]
        result = StepOutputs(poses=out[POSES], saliency=out[SALIENCY])
        self._last_outputs = (out, result)
        return result

    def _run_checked(self, inputs: dict[str, np.ndarray], state: np.ndarray
                     ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """One checked ``infer`` (ResidentStates' plain and first steps)."""
        outputs = dict(self.runner.infer({**inputs, STATE: state}))
        state_out = outputs.pop(STATE_OUT)
        if state_out.shape != state.shape:
            raise RunnerError(
                f"{self.runner.name}: state_out has shape {state_out.shape}, expected "
                f"({state.shape[0]}, {self.state_size}) (manifest state_size)"
            )
        return outputs, state_out

    def _bind_step(self, inputs: dict[str, np.ndarray], state: np.ndarray,
                   outputs: dict[str, np.ndarray], state_out: np.ndarray) -> Callable[[], None]:
        return self.runner.bind({**inputs, STATE: state}, {**outputs, STATE_OUT: state_out})

    def close(self) -> None:
        self.runner.deactivate()
