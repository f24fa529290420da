"""The salient-posture generator: streaming == offline, causality, layout, ONNX step."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sdk.skeleton import MODEL_SKELETON
from train.models.generator import (
    GeneratorConfig,
    GeneratorStep,
    SalientPostureGenerator,
)

TINY = GeneratorConfig(
    lookahead_frames=2, noise_dim=3, face_hidden=8, face_dilations=(1,), body_hidden=16,
    body_dilations=(1, 2, 4), embedding_dim=8, pose_hidden=16, pose_dilations=(1,),
    decoder_hidden=16, decoder_dilations=(1, 2), detector_hidden=4, top_k=4,
)


def _model(config: GeneratorConfig = TINY, seed: int = 0) -> SalientPostureGenerator:
    torch.manual_seed(seed)
    model = SalientPostureGenerator(config).eval()
    mean = torch.randn(config.feature_dim)
    model.set_feature_normalization(mean, torch.rand(config.feature_dim) + 0.5)
    return model


def _inputs(config: GeneratorConfig, batch: int, frames: int, seed: int = 1
            ) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, frames, config.feature_dim, generator=g) * 3,
            torch.randn(batch, frames, config.noise_dim, generator=g))


@pytest.mark.parametrize("separate, hold", [(True, 0), (False, 0), (True, 4)])
def test_forward_equals_step_by_step_for_random_chunks(separate: bool, hold: int) -> None:
    config = dataclasses.replace(TINY, separate_branches=separate, saliency_hold_frames=hold)
    model = _model(config)
    features, noise = _inputs(config, batch=3, frames=57)
    rng = np.random.default_rng(7)
    with torch.no_grad():
        offline = model(features, noise)
        state = model.init_state(3)
        poses, saliency, start = [], [], 0
        while start < features.shape[1]:
            stop = start + int(rng.integers(1, 9))
            p, s, state = model.step(features[:, start:stop], noise[:, start:stop], state)
            poses.append(p)
            saliency.append(s)
            start = stop
    assert torch.cat(poses, 1).sub(offline.poses).abs().max() <= 1e-5
    assert torch.cat(saliency, 1).sub(offline.output_saliency).abs().max() <= 1e-5


def test_saliency_hold_is_the_running_max_of_the_raw_score_and_training_sees_raw() -> None:
    config = dataclasses.replace(TINY, saliency_hold_frames=3)
    model = _model(config)
    raw_model = _model(TINY)  # same seed: the same weights, no hold
    features, noise = _inputs(config, batch=2, frames=40)
    with torch.no_grad():
        held = model(features, noise)
        raw = raw_model(features, noise)
    assert model.state_size == raw_model.state_size + 3
    # training (the top-k loss, the consistency weights) reads the raw score
    assert torch.equal(held.saliency, raw.saliency)
    assert torch.equal(held.seq_score, raw.seq_score)
    scores = raw.saliency.numpy()
    want = np.stack([[scores[b, max(0, t - 3):t + 1].max() for t in range(scores.shape[1])]
                     for b in range(scores.shape[0])])
    np.testing.assert_allclose(held.output_saliency.numpy(), want, atol=1e-7)
    assert (held.output_saliency > held.saliency + 1e-3).any()  # the hold does something
    assert torch.equal(raw.output_saliency, raw.saliency)  # no hold: the raw score


def test_output_at_input_t_ignores_later_inputs() -> None:
    model = _model()
    features, noise = _inputs(TINY, batch=1, frames=30)
    changed_f, changed_n = features.clone(), noise.clone()
    changed_f[:, 20:] += 5.0
    changed_n[:, 20:] -= 1.0
    with torch.no_grad():
        a, b = model(features, noise), model(changed_f, changed_n)
    assert torch.equal(a.poses[:, :20], b.poses[:, :20])
    assert torch.equal(a.saliency[:, :20], b.saliency[:, :20])
    assert not torch.allclose(a.poses[:, 20:], b.poses[:, 20:])


def test_root_is_zero_and_layout_is_full_skeleton() -> None:
    model = _model()
    features, noise = _inputs(TINY, batch=2, frames=12)
    with torch.no_grad():
        out = model(features, noise)
    assert out.poses.shape == (2, 12, MODEL_SKELETON.num_joints, 2)
    assert torch.all(out.poses[:, :, MODEL_SKELETON.root] == 0)
    assert torch.all((out.saliency >= 0) & (out.saliency <= 1))
    assert out.seq_score.shape == (2,)


def test_face_decoder_writes_only_face_joints() -> None:
    model = _model()
    features, noise = _inputs(TINY, batch=1, frames=10)
    with torch.no_grad():
        before = model(features, noise).poses
        assert model.face_head is not None and model.face_head.bias is not None
        torch.nn.init.constant_(model.face_head.bias, 1.0)
        after = model(features, noise).poses
    moved = (after - before).abs().amax(dim=(0, 1, 3)) > 0
    assert moved.nonzero().flatten().tolist() == list(MODEL_SKELETON.groups["face"])


def test_training_forward_aligns_pose_frames_with_lookahead() -> None:
    model = _model()
    features, noise = _inputs(TINY, batch=2, frames=20)
    pose = torch.randn(2, 20 - TINY.lookahead_frames, MODEL_SKELETON.num_joints, 2)
    out = model(features, noise, pose)
    assert out.pose_emb is not None and out.recon_poses is not None
    assert out.aligned_poses.shape == pose.shape == out.recon_poses.shape
    assert out.aligned_audio_emb.shape == out.pose_emb.shape == (2, 18, TINY.embedding_dim)
    topk = out.aligned_saliency.topk(TINY.top_k, dim=1).values.mean(1)
    assert torch.allclose(out.seq_score, topk)
    with pytest.raises(ValueError, match="pose must be"):
        model(features, noise, pose[:, 1:])


def test_bad_inputs_raise_clear_errors() -> None:
    model = _model()
    with pytest.raises(ValueError, match="features must be"):
        model.step(torch.zeros(1, 2, 90), torch.zeros(1, 2, 3), model.init_state(1))
    with pytest.raises(ValueError, match="noise must be"):
        model.step(torch.zeros(1, 2, 91), torch.zeros(1, 2, 4), model.init_state(1))
    with pytest.raises(ValueError, match="std must be"):
        model.set_feature_normalization(torch.zeros(91), torch.zeros(91))
    with pytest.raises(ValueError, match="num_joints"):
        GeneratorConfig(num_joints=121)


def test_config_round_trips_through_dict() -> None:
    assert GeneratorConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ValueError, match="unknown"):
        GeneratorConfig.from_dict({"hiden": 3})


def test_default_config_state_size() -> None:
    model = SalientPostureGenerator(GeneratorConfig())
    assert model.init_state(2).shape == (2, model.state_size)
    # caches: face 2x(64x2), body 128x2x(1+2+4+8), two decoders 2x128x2x(1+2)
    assert model.state_size == 2 * 64 * 2 + 128 * 2 * 15 + 2 * 128 * 2 * 3


@pytest.mark.parametrize("hold", [0, 2])
def test_onnx_step_matches_torch_step(tmp_path, hold: int) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = _model(dataclasses.replace(TINY, saliency_hold_frames=hold))
    step = GeneratorStep(model)
    batch, time = torch.export.Dim("batch"), torch.export.Dim("time")
    example = (*_inputs(TINY, 2, 3), torch.randn(2, model.state_size))
    path = tmp_path / "generator.onnx"
    torch.onnx.export(
        step, example, str(path), dynamo=True, verbose=False,
        input_names=["features", "noise", "state"],
        output_names=["poses", "saliency", "state_out"],
        dynamic_shapes={"features": {0: batch, 1: time}, "noise": {0: batch, 1: time},
                        "state": {0: batch}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b, tc in [(1, 1), (3, 5), (2, 8)]:
        features, noise = _inputs(TINY, b, tc, seed=b + tc)
        state = torch.randn(b, model.state_size)
        got = session.run(None, {"features": features.numpy(), "noise": noise.numpy(),
                                 "state": state.numpy()})
        with torch.no_grad():
            want = model.step(features, noise, state)
        for g, w in zip(got, want, strict=True):
            assert g.shape == tuple(w.shape)
            np.testing.assert_allclose(g, w.numpy(), atol=1e-4, rtol=0)
