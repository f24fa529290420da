"""export.step_int8: tolerance ratios and the choice of Gemm layers kept fp32 (no ONNX)."""

from __future__ import annotations

import math

import pytest

from export import step_int8
from export.step_int8 import HEADROOM, choose_fp32_layers, tolerance_ratio

TOL = {"keypoints_max_abs": 0.05, "saliency_max_abs": 0.15, "offset_frames": 1}


def test_tolerance_ratio_is_the_worst_key_and_skips_unmeasured() -> None:
    measured = {"keypoints_max_abs": 0.025, "saliency_max_abs": 0.12, "offset": 3,
                "offset_reference": 3}
    assert tolerance_ratio(measured, TOL) == pytest.approx(0.8)
    assert tolerance_ratio({"keypoints_max_abs": 0.01}, TOL) == pytest.approx(0.2)
    assert tolerance_ratio({**measured, "offset": 5}, TOL) == pytest.approx(2.0)
    assert tolerance_ratio({"keypoints_max_abs": float("nan")}, TOL) == math.inf
    assert tolerance_ratio({"offset": 1, "offset_reference": 0}, {"offset_frames": 0}) \
        == math.inf
    assert tolerance_ratio({"offset": 1, "offset_reference": 1}, {"offset_frames": 0}) == 0.0


class _FakeModel:
    """Deltas add up from each quantised Gemm's error (keypoints only)."""

    def __init__(self, error: dict[str, float]) -> None:
        self.error = error
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, keep_fp32: tuple[str, ...]) -> dict[str, float]:
        self.calls.append(keep_fp32)
        return {"keypoints_max_abs": sum(e for n, e in self.error.items()
                                         if n not in keep_fp32)}


def test_all_int8_within_headroom_needs_one_measurement() -> None:
    model = _FakeModel({"a": 0.001, "b": 0.002})
    choice = choose_fp32_layers(["a", "b"], model, TOL)
    assert choice.accepted and choice.keep_fp32 == () and model.calls == [()]
    assert choice.describe() == step_int8.INT8_QUANTIZATION


def test_most_sensitive_layers_are_kept_fp32_until_within_headroom() -> None:
    # all int8: 0.048 (within the 0.05 tolerance but not within half of it)
    model = _FakeModel({"a": 0.002, "b": 0.020, "c": 0.004, "d": 0.022})
    choice = choose_fp32_layers(list(model.error), model, TOL)
    assert choice.accepted
    assert choice.keep_fp32 == ("d", "b")  # d alone leaves 0.026 > HEADROOM * 0.05
    assert choice.measured["keypoints_max_abs"] == pytest.approx(0.006)
    assert choice.sensitivity["d"] == pytest.approx(0.022 / 0.05)
    assert [ratio <= HEADROOM for _, ratio in choice.trials] == [False, False, True]
    assert model.calls[-1] == ("d", "b")  # the model left on disk is the chosen one
    assert "d, b" in choice.describe()


def test_gives_up_after_max_fp32_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(step_int8, "MAX_FP32_LAYERS", 2)
    model = _FakeModel({n: 0.03 for n in "abcde"})
    choice = choose_fp32_layers(list(model.error), model, TOL)
    assert not choice.accepted and len(choice.keep_fp32) == 2
    assert choice.measured["keypoints_max_abs"] == pytest.approx(0.09)
    assert model.calls[-1] == choice.keep_fp32
