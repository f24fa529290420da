"""Runner.bind and the host stepper's ping-pong state buffers (sdk/runners/resident_state.py).

The reference is the plain way: ``runner.infer`` on the table's rows, state written back
(what the stepper did before), run by hand next to the stepper on the same inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from helpers_bundle import TINY_GENERATOR, tiny_bundle  # noqa: F401  (session fixture)

from sdk.features import DEFAULT_FEATURES
from sdk.runners.base import (
    Runner,
    RunnerError,
    RunnerInputError,
    TensorMeta,
)
from sdk.runners.host_stepper import HostStateStepper
from sdk.runners.onnxrt import OnnxRuntimeRunner
from train.models.generator import SalientPostureGenerator

F = DEFAULT_FEATURES.feature_dim
N, S = TINY_GENERATOR.noise_dim, SalientPostureGenerator(TINY_GENERATOR).state_size


def inputs(batch: int, frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 30, (batch, frames, F)).astype(np.float32),
            rng.normal(0, 1, (batch, frames, N)).astype(np.float32))


class PlainStepper:
    """The reference: a dict of states, one checked ``infer`` per step."""

    def __init__(self, runner: OnnxRuntimeRunner) -> None:
        self.runner, self.states = runner, {}  # type: ignore[var-annotated]

    def step(self, features: np.ndarray, noise: np.ndarray, slots: list[int]
             ) -> tuple[np.ndarray, np.ndarray]:
        state = np.stack([self.states.get(s, np.zeros(S, np.float32)) for s in slots])
        out = self.runner.infer({"features": features, "noise": noise, "state": state})
        for row, slot in enumerate(slots):
            self.states[slot] = out["state_out"][row].copy()
        return out["poses"].copy(), out["saliency"].copy()


@pytest.fixture()
def runner(tiny_bundle: Path) -> OnnxRuntimeRunner:  # noqa: F811
    return OnnxRuntimeRunner(tiny_bundle / "generator.onnx", intra_op_num_threads=1)


def test_bind_runs_on_the_current_contents_of_the_bound_arrays(
        runner: OnnxRuntimeRunner) -> None:
    features, noise = inputs(2, 1, seed=0)
    state = np.zeros((2, S), np.float32)
    out = {"poses": np.empty((2, 1, 122, 2), np.float32),
           "saliency": np.empty((2, 1), np.float32), "state_out": np.empty((2, S), np.float32)}
    with runner:
        call = runner.bind({"features": features, "noise": noise, "state": state}, out)
        for seed in range(3):  # refilled in place, as the stepper does
            features[...], noise[...] = inputs(2, 1, seed)
            state[...] = seed
            call()
            want = runner.infer({"features": features, "noise": noise, "state": state})
            for name, array in out.items():
                np.testing.assert_array_equal(array, want[name])
    with pytest.raises(RunnerError, match="earlier activation"):
        call()


def test_bind_refuses_what_it_cannot_bind(runner: OnnxRuntimeRunner) -> None:
    features, noise = inputs(2, 1, seed=0)
    state = np.zeros((2, S), np.float32)
    out = {"poses": np.empty((2, 1, 122, 2), np.float32)}
    with runner:
        with pytest.raises(RunnerInputError, match="C-contiguous"):
            runner.bind({"features": features, "noise": noise,
                         "state": np.zeros((S, 2), np.float32).T}, out)
        with pytest.raises(RunnerInputError, match="must be float32"):
            runner.bind({"features": features, "noise": noise,
                         "state": state.astype(np.float64)}, out)
        with pytest.raises(RunnerInputError, match="no outputs"):
            runner.bind({"features": features, "noise": noise, "state": state},
                        {"pose": out["poses"]})
        call = runner.bind({"features": features, "noise": noise, "state": state},
                           {"state_out": np.empty((3, S), np.float32)})  # wrong batch
        with pytest.raises(RunnerError, match="inference failed"):
            call()


def test_stepper_with_resident_groups_equals_plain_steps(runner: OnnxRuntimeRunner) -> None:
    """Groups that repeat, change order, overlap, shrink, and rows read, reset and
    released between steps: every output and every state equals the plain reference."""
    with runner:
        stepper = HostStateStepper(runner, S, "onnxruntime-cpu", max_resident=5)
        plain = PlainStepper(runner)
        slots = [stepper.allocate_slot() for _ in range(6)]
        schedule = [[0, 1], [0, 1], [2, 3, 4], [0, 1], [2, 3, 4], [1, 0], [0, 1],
                    [4, 5], [2, 3, 4], [5], [5], [0, 1, 2, 3, 4, 5], [0, 1]]
        for step, batch in enumerate(schedule):
            features, noise = inputs(len(batch), 1, seed=step)
            out = stepper.step(features, noise, batch)
            poses, saliency = plain.step(features, noise, batch)
            np.testing.assert_array_equal(out.poses, poses, err_msg=f"step {step} {batch}")
            np.testing.assert_array_equal(out.saliency, saliency)
            if step == 4:  # read while resident: the latest state, not the table's old row
                np.testing.assert_array_equal(stepper.read_state(3), plain.states[3])
            if step == 6:
                stepper.reset_slot(1)
                plain.states[1] = np.zeros(S, np.float32)
        for slot in slots:
            np.testing.assert_array_equal(stepper.read_state(slot), plain.states[slot])
        stepper.step(*inputs(2, 1, seed=99), [0, 1])
        stepper.release_slot(0)  # written back, then freed: a new slot starts from zeros
        assert stepper.allocate_slot() == 0 and not stepper.read_state(0).any()


def test_a_batch_stepped_again_is_stepped_without_gather_or_scatter(
        runner: OnnxRuntimeRunner) -> None:
    """The first step of a batch goes through the table; from the second on the table row
    is NOT updated (the state lives in the ping-pong buffers) until the row is read."""
    with runner:
        stepper = HostStateStepper(runner, S, "onnxruntime-cpu")
        slot = stepper.allocate_slot()
        stepper.step(*inputs(1, 1, 0), [slot])
        after_first = stepper._table[slot].copy()
        assert after_first.any() and stepper._resident.resident_slots == 0
        for seed in (1, 2, 3):
            stepper.step(*inputs(1, 1, seed), [slot])
        assert stepper._resident.resident_slots == 1
        np.testing.assert_array_equal(stepper._table[slot], after_first)  # not scattered
        assert not np.array_equal(stepper.read_state(slot), after_first)  # flushed on read
        assert stepper._resident.resident_slots == 0


def test_batches_that_never_repeat_stay_on_the_plain_path(runner: OnnxRuntimeRunner) -> None:
    """A ready set that changes every step (a server's ticks) makes no groups."""
    with runner:
        stepper = HostStateStepper(runner, S, "onnxruntime-cpu")
        plain = PlainStepper(runner)
        for _ in range(4):
            stepper.allocate_slot()
        for step, batch in enumerate([[0], [0, 1], [1, 2], [0, 1, 2], [3], [2, 3], [0, 3]]):
            features, noise = inputs(len(batch), 1, seed=step)
            out = stepper.step(features, noise, batch)
            np.testing.assert_array_equal(out.poses, plain.step(features, noise, batch)[0])
            assert stepper._resident.resident_slots == 0


def test_a_step_with_a_wrong_input_changes_nothing(runner: OnnxRuntimeRunner) -> None:
    with runner:
        stepper = HostStateStepper(runner, S, "onnxruntime-cpu")
        slot = stepper.allocate_slot()
        features, noise = inputs(1, 1, seed=0)
        stepper.step(features, noise, [slot])
        stepper.step(features, noise, [slot])
        before = stepper.read_state(slot)
        stepper.step(features, noise, [slot])
        with pytest.raises(RunnerInputError, match="must be float32"):
            stepper.step(features.astype(np.float64), noise, [slot])
        plain = PlainStepper(runner)
        plain.states[slot] = before
        plain.step(features, noise, [slot])
        np.testing.assert_array_equal(stepper.read_state(slot), plain.states[slot])


def test_a_resident_step_refuses_an_input_that_only_broadcasts(runner: OnnxRuntimeRunner
                                                              ) -> None:
    """The bound buffers' refill checks shapes: a (1, 1, 1) noise would broadcast into the
    (1, 1, N) buffer; it must be refused as the plain step refuses it, state untouched."""
    with runner:
        stepper = HostStateStepper(runner, S, "onnxruntime-cpu")
        slot = stepper.allocate_slot()
        features, noise = inputs(1, 1, seed=0)
        stepper.step(features, noise, [slot])
        before = stepper.read_state(slot)
        for _ in range(3):  # plain, then bound (resident) on the second step, then refilled
            stepper.step(features, noise, [slot])
        assert stepper._resident.resident_slots == 1
        with pytest.raises(RunnerInputError, match="noise"):
            stepper.step(features, np.ascontiguousarray(noise[:, :, :1]), [slot])
        plain = PlainStepper(runner)
        plain.states[slot] = before
        for _ in range(3):
            plain.step(features, noise, [slot])
        np.testing.assert_array_equal(stepper.read_state(slot), plain.states[slot])


class DoublingRunner(Runner):
    """A backend without buffer binding: ``y = 2 x`` (the base class's copying bind)."""

    def _activate(self) -> None: ...

    def _deactivate(self) -> None: ...

    def _read_input_metadata(self) -> dict[str, TensorMeta]:
        return {"x": TensorMeta("x", np.dtype(np.float32), ("batch", 3))}

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": 2 * feed["x"]}


def test_bind_on_a_backend_without_binding_copies_into_the_outputs() -> None:
    x, y = np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)
    with DoublingRunner("doubling") as runner:
        call = runner.bind({"x": x}, {"y": y})
        x[...] = 5.0
        call()
        np.testing.assert_array_equal(y, np.full((2, 3), 10.0, np.float32))
        wrong = runner.bind({"x": x}, {"y": np.zeros((3, 3), np.float32)})
        with pytest.raises(RunnerError, match=r"shape \(2, 3\), the bound buffer \(3, 3\)"):
            wrong()
