"""Gesture styles: the model, the style table, export (ONNX == PyTorch per style) and the SDK.

A style is a learned vector added to the latent the body/hands decoder reads; it must
change the body and hands (not the face), flow through the streaming step, be chosen per
stream (``create_stream(style=...)``, mixed styles in one batch) and default to the
manifest's default style. Bundles from before styles load with one implicit style.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_bundle import (  # noqa: F401  (session fixtures)
    TINY_GENERATOR,
    TINY_STYLES,
    tiny_bundle,
    tiny_styled_bundle,
)

from export.gemm_step import export_step
from export.gemm_step_check import step_parity
from export.parity import ParityError, generator_parity
from sdk.bundle import BundleError, load_bundle, write_bundle_manifest
from sdk.manifest import IMPLICIT_STYLE, GeneratorSpec, ModelSpec
from sdk.runners.select import BackendConfig
from sdk.skeleton import MODEL_SKELETON
from sdk.stream_batch import StreamBatch
from sdk.streaming import GeneratorConfig as StreamingConfig
from sdk.streaming import StreamError, StreamingGenerator
from train.data.styles import default_style, speaker_style, style_indices
from train.models.generator import GeneratorConfig, SalientPostureGenerator

FACE = np.array(MODEL_SKELETON.groups["face"])
BODY_HANDS = np.array([j for j in range(MODEL_SKELETON.num_joints)
                       if j not in set(FACE.tolist()) and j != MODEL_SKELETON.root])
STYLED = GeneratorConfig(**{**TINY_GENERATOR.to_dict(), "styles": ["a", "b", "c"],
                            "default_style": "b", "dropout": 0.0})


def _model(config: GeneratorConfig = STYLED, seed: int = 0) -> SalientPostureGenerator:
    torch.manual_seed(seed)
    return SalientPostureGenerator(config).eval()


def _inputs(batch: int, frames: int, config: GeneratorConfig = STYLED
            ) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return (torch.randn(batch, frames, config.feature_dim, generator=gen),
            torch.randn(batch, frames, config.noise_dim, generator=gen))


# ---- the model ----
def test_a_style_changes_body_and_hands_but_not_the_face() -> None:
    model = _model()
    features, noise = _inputs(1, 12)
    with torch.no_grad():
        a = model(features, noise, style=torch.tensor([0])).poses[0].numpy()
        c = model(features, noise, style=torch.tensor([2])).poses[0].numpy()
    assert np.abs(a[:, BODY_HANDS] - c[:, BODY_HANDS]).max() > 1e-3
    np.testing.assert_array_equal(a[:, FACE], c[:, FACE])


def test_no_style_is_the_default_style() -> None:
    model = _model()
    features, noise = _inputs(2, 9)
    with torch.no_grad():
        omitted = model(features, noise).poses
        default = model(features, noise, style=torch.tensor([1, 1])).poses  # "b"
        first = model(features, noise, style=torch.tensor([0, 0])).poses
    torch.testing.assert_close(omitted, default, rtol=0, atol=0)
    assert (omitted - first).abs().max() > 1e-3  # a wrong default would show


def test_streaming_equals_offline_for_each_style() -> None:
    model = _model()
    features, noise = _inputs(3, 11)
    styles = torch.tensor([0, 1, 2])
    with torch.no_grad():
        offline = model(features, noise, style=styles).poses
        state, steps = model.init_state(3), []
        for start, size in ((0, 1), (1, 4), (5, 6)):
            poses, _, state = model.step(features[:, start:start + size],
                                         noise[:, start:start + size], state, styles)
            steps.append(poses)
    torch.testing.assert_close(torch.cat(steps, 1), offline, rtol=0, atol=1e-5)


def test_a_model_without_styles_refuses_a_style_and_has_no_embedding() -> None:
    model = _model(TINY_GENERATOR)
    assert model.style_embedding is None
    assert not any(k.startswith("style") for k in model.state_dict())  # old checkpoints load
    features, noise = _inputs(1, 4, TINY_GENERATOR)
    with pytest.raises(ValueError, match="no styles"):
        model(features, noise, style=torch.tensor([0]))


@pytest.mark.parametrize("styles, default, match", [
    (("b", "a"), "a", "sorted"), (("a", "a"), "a", "distinct"), (("a", "b"), "c", "one of"),
    ((), "a", "one of")])
def test_style_config_is_checked(styles: tuple[str, ...], default: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GeneratorConfig(styles=styles, default_style=default)


# ---- the style table of a corpus ----
def test_speaker_style_reads_the_profile_else_the_speaker_name(tmp_path: Path) -> None:
    (tmp_path / "voice_a").mkdir()
    (tmp_path / "voice_a" / "synth_speaker.json").write_text(json.dumps({"style": "style_1"}))
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "synth_speaker.json").write_text(json.dumps({"seed": 0}))
    (tmp_path / "sdt_speaker").mkdir()
    assert speaker_style(tmp_path, "voice_a") == "style_1"
    assert speaker_style(tmp_path, "plain") == "plain"
    assert speaker_style(tmp_path, "sdt_speaker") == "sdt_speaker"
    (tmp_path / "voice_a" / "synth_speaker.json").write_text(json.dumps({"style": 3}))
    with pytest.raises(ValueError, match="non-empty string"):
        speaker_style(tmp_path, "voice_a")


def test_default_style_has_most_windows_ties_by_name() -> None:
    assert default_style(["b", "a", "b", "c"]) == "b"
    assert default_style(["c", "b", "c", "b"]) == "b"  # a tie: the first name
    with pytest.raises(ValueError, match="no training window"):
        default_style([])
    assert style_indices({"v1": "s0", "v2": "s1", "v3": "s0"}, ("s0", "s1")) == {
        "v1": 0, "v2": 1, "v3": 0}
    with pytest.raises(ValueError, match="not in the style table"):
        style_indices({"v1": "s9"}, ("s0", "s1"))


# ---- export: ONNX == PyTorch per style ----
def test_gemm_step_matches_torch_for_every_style_and_catches_a_wrong_table(
        tmp_path: Path) -> None:
    model = _model()
    features = np.random.default_rng(0).standard_normal((6, STYLED.feature_dim))
    path = tmp_path / "step.onnx"
    export_step(model, path)
    assert step_parity(model, path, features.astype(np.float32), batch=3).max_abs < 1e-4
    with torch.no_grad():  # a step built from other style vectors must fail the check
        assert model.style_embedding is not None
        model.style_embedding.weight[2] += 0.5
    assert step_parity(model, path, features.astype(np.float32), batch=3).max_abs_poses > 1e-2


def test_generator_parity_covers_a_non_default_style(tmp_path: Path) -> None:
    from export.onnx_export import export_generator

    model = _model()
    path = tmp_path / "generator.onnx"
    spec = export_generator(model, path)
    assert [(t.name, t.dtype) for t in spec.inputs][-1] == ("style", "int32")
    speech = np.random.default_rng(1).standard_normal((10, STYLED.feature_dim))
    generator_parity(model, path, speech.astype(np.float32))
    with torch.no_grad():  # only a non-default style differs: the check must still see it
        assert model.style_embedding is not None
        model.style_embedding.weight[2] += 0.5
    with pytest.raises(ParityError):
        generator_parity(model, path, speech.astype(np.float32))


# ---- the manifest ----
def test_generator_spec_round_trips_styles_and_old_manifests_have_one_implicit_style() -> None:
    model = ModelSpec("generator.onnx", (), (), 18)
    styled = GeneratorSpec(model, 2, 3, 10, styles=("a", "b"), default_style="b")
    again = GeneratorSpec.from_dict(json.loads(json.dumps(styled.to_dict())))
    assert again == styled and again.style_index(None) == 1 and again.style_index("a") == 0
    with pytest.raises(ValueError, match=r"unknown style 'z'.*\['a', 'b'\]"):
        styled.style_index("z")
    old = GeneratorSpec(model, 2, 3, 10)
    assert "styles" not in old.to_dict()  # a style-less manifest is written as before
    assert old.style_names == (IMPLICIT_STYLE,) and old.style_index(None) == 0
    with pytest.raises(ValueError, match="sorted"):
        GeneratorSpec(model, 2, 3, 10, styles=("b", "a"), default_style="a")


# ---- the SDK on bundles ----
@pytest.fixture()
def styled(tiny_styled_bundle: Path) -> Iterator[StreamingGenerator]:  # noqa: F811
    config = StreamingConfig(tiny_styled_bundle,
                             BackendConfig("onnxruntime-cpu", intra_op_num_threads=1))
    with StreamingGenerator(config) as gen:
        yield gen


def _speech(speech_16k: np.ndarray) -> np.ndarray:
    return np.asarray(speech_16k[:16000], dtype=np.float32)


def test_the_bundle_lists_its_styles_and_an_unknown_style_is_refused(
        styled: StreamingGenerator) -> None:
    assert styled.styles == TINY_STYLES and styled.default_style == "lively"
    manifest = json.loads((styled.bundle.root / "manifest.json").read_text())
    assert manifest["generator"]["styles"] == list(TINY_STYLES)
    with pytest.raises(StreamError, match=r"unknown style 'loud'.*'calm', 'lively', 'wide'"):
        styled.create_stream(style="loud")
    with styled.create_stream(style="wide") as stream:
        assert (stream.style, stream.style_index) == ("wide", 2)


def test_styles_give_other_body_frames_and_the_default_is_the_omitted_one(
        styled: StreamingGenerator, speech_16k: np.ndarray) -> None:
    audio = _speech(speech_16k)
    omitted = styled.generate(audio, 16000, seed=3)
    default = styled.generate(audio, 16000, seed=3, style="lively")
    calm = styled.generate(audio, 16000, seed=3, style="calm")
    np.testing.assert_array_equal(omitted.keypoints, default.keypoints)
    assert np.abs(calm.keypoints[:, BODY_HANDS] - default.keypoints[:, BODY_HANDS]).max() > 0.5
    np.testing.assert_allclose(calm.keypoints[:, FACE], default.keypoints[:, FACE], atol=1e-3)


def test_chunked_stream_equals_offline_per_style(styled: StreamingGenerator,
                                                 speech_16k: np.ndarray) -> None:
    audio = _speech(speech_16k)
    for style in ("calm", "wide"):
        offline = styled.generate(audio, 16000, seed=1, style=style)
        chunked = styled.generate(audio, 16000, seed=1, style=style,
                                  chunk_samples=itertools.cycle([333, 1700, 41]))
        np.testing.assert_allclose(chunked.keypoints, offline.keypoints, atol=1e-3)


def test_a_batch_of_mixed_styles_gives_each_stream_its_own_frames(
        styled: StreamingGenerator, speech_16k: np.ndarray) -> None:
    audio = _speech(speech_16k)[:12000]
    styles = ["wide", None, "calm", "wide"]
    blocks = np.stack([audio] * 4)
    with StreamBatch(styled, seeds=[5, 5, 5, 6], sample_rate=16000, styles=styles) as batch:
        parts = [batch.accept(blocks[:, :7000]), batch.accept(blocks[:, 7000:]), batch.finish()]
    mixed = np.concatenate([p.keypoints for p in parts], axis=1)
    for i, (style, seed) in enumerate(zip(styles, [5, 5, 5, 6], strict=True)):
        alone = styled.generate(audio, 16000, seed=seed, style=style)
        np.testing.assert_allclose(mixed[i], alone.keypoints, atol=1e-3)
    with pytest.raises(StreamError, match="one style per stream"):
        StreamBatch(styled, seeds=[1, 2], sample_rate=16000, styles=["calm"])
    with pytest.raises(StreamError, match="unknown style"):
        StreamBatch(styled, seeds=[1], sample_rate=16000, styles=["loud"])


def test_a_bundle_without_styles_has_one_implicit_style(tiny_bundle: Path,  # noqa: F811
                                                         speech_16k: np.ndarray) -> None:
    config = StreamingConfig(tiny_bundle, BackendConfig("onnxruntime-cpu",
                                                        intra_op_num_threads=1))
    with StreamingGenerator(config) as gen:
        assert gen.styles == (IMPLICIT_STYLE,) and gen.default_style == IMPLICIT_STYLE
        audio = _speech(speech_16k)[:8000]
        np.testing.assert_array_equal(gen.generate(audio, 16000).keypoints,
                                      gen.generate(audio, 16000, style="default").keypoints)
        with pytest.raises(StreamError, match="unknown style 'calm'"):
            gen.create_stream(style="calm")


def test_a_manifest_whose_styles_the_model_lacks_is_refused(
        tiny_bundle: Path, tmp_path: Path) -> None:  # noqa: F811
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    manifest = load_bundle(copy).manifest
    spec = manifest.generator
    tampered = dataclasses.replace(manifest, generator=dataclasses.replace(
        spec, styles=("a", "b"), default_style="a"))
    write_bundle_manifest(copy, tampered)
    with pytest.raises(BundleError, match="lacks a style input"):
        StreamingGenerator(StreamingConfig(copy, BackendConfig("onnxruntime-cpu")))


def test_triton_config_takes_the_style_per_sequence(tiny_styled_bundle: Path,  # noqa: F811
                                                    tmp_path: Path) -> None:
    from export.triton import export_triton_repository, model_config_module, parse_config

    export_triton_repository(tiny_styled_bundle, tmp_path)
    config = parse_config((tmp_path / "gesturert_generator_onnx" / "config.pbtxt").read_text())
    style = next(t for t in config.input if t.name == "style")
    assert list(style.dims) == [1] and list(style.reshape.shape) == []
    assert model_config_module().DataType.Name(style.data_type) == "TYPE_INT32"


def test_a_live_client_gets_the_frames_of_its_style(styled: StreamingGenerator,
                                                     speech_16k: np.ndarray) -> None:
    import asyncio

    from helpers_live import ServerThread

    from sdk.live.client import stream_audio

    audio = _speech(speech_16k)
    want = styled.generate(audio, 16000, seed=2, style="calm")
    server = ServerThread(generator=styled)  # closes the generator when stopped
    try:
        result = asyncio.run(stream_audio(server.url, audio, 16000, seed=2, style="calm"))
    finally:
        server.stop()
    assert result.ready["styles"] == list(TINY_STYLES) and result.ready["style"] == "calm"
    np.testing.assert_allclose(result.frames.keypoints, want.keypoints, atol=1e-3)


def test_the_demo_renders_two_styles_side_by_side(
        tiny_styled_bundle: Path, tmp_path: Path, speech_16k: np.ndarray,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    import imageio_ffmpeg
    import soundfile

    from sdk.cli import main

    wav = tmp_path / "speech.wav"
    soundfile.write(wav, _speech(speech_16k)[:24000], 16000)
    out = tmp_path / "demo"
    assert main(["demo", "--audio", str(wav), "--bundle", str(tiny_styled_bundle),
                 "--out", str(out), "--styles", "calm,wide"]) == 0
    printed = capsys.readouterr().out
    assert "styles: calm (left) and wide (right)" in printed
    assert printed.count("PSD: ") == 2  # one per style
    reader = imageio_ffmpeg.read_frames(str(out / "demo.mp4"))
    meta = next(reader)
    assert tuple(meta["size"]) == (640, 320)  # two 320 x 320 canvases
    reader.close()
    calm = np.load(out / "frames.npz")["keypoints"]  # the streamed style is the first one
    with StreamingGenerator(StreamingConfig(tiny_styled_bundle,
                                            BackendConfig("onnxruntime-cpu"))) as gen:
        want = gen.generate(_speech(speech_16k)[:24000], 16000, style="calm")
    np.testing.assert_allclose(calm, want.keypoints, atol=1e-3)
    for bad, message in (("calm", "two style names"), ("calm,loud", "not among")):
        assert main(["demo", "--audio", str(wav), "--bundle", str(tiny_styled_bundle),
                     "--out", str(tmp_path / "x"), "--styles", bad]) == 2
        assert message in capsys.readouterr().err


# ---- golden reference and validate ----
def test_validate_checks_a_second_style_and_catches_a_tampered_style_row(
        tiny_styled_bundle: Path, tmp_path: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    from export.tamper import STYLE_CORPUS
    from sdk.cli import main

    reference = load_bundle(tiny_styled_bundle).manifest.reference
    assert reference is not None and reference.other_style == "calm"  # first non-default
    assert main(["validate", str(tiny_styled_bundle), "--out", str(tmp_path / "ok")]) == 0
    report = json.loads((tmp_path / "ok" / "validate.json").read_text())
    styled_checks = [c for c in report["checks"] if c["mode"] == "offline/style=calm"]
    assert styled_checks and all(c["passed"] for c in styled_checks)
    capsys.readouterr()

    root = tmp_path / "tampered"
    shutil.copytree(tiny_styled_bundle, root)
    make, expected = STYLE_CORPUS["a non-default style row +0.1"]
    make(root)
    assert main(["validate", str(root), "--out", str(tmp_path / "bad")]) == 1
    assert any(line.strip().startswith(expected) for line in capsys.readouterr().err
               .splitlines() if "> tolerance" in line)
    report = json.loads((tmp_path / "bad" / "validate.json").read_text())
    failed = {c["mode"] for c in report["checks"] if not c["passed"]}
    assert failed == {"offline/style=calm"}  # the default style alone would not see it


def test_gesturert_stream_takes_a_style(tiny_styled_bundle: Path, tmp_path: Path,  # noqa: F811
                                        speech_16k: np.ndarray,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import soundfile

    from sdk.cli import main

    wav = tmp_path / "speech.wav"
    audio = _speech(speech_16k)[:16000]
    soundfile.write(wav, audio, 16000, subtype="FLOAT")
    out = tmp_path / "poses.npz"
    assert main(["stream", str(tiny_styled_bundle), str(wav), "--out", str(out),
                 "--backend", "onnxruntime-cpu", "--style", "wide"]) == 0
    assert "style: wide (of calm, lively, wide)" in capsys.readouterr().out
    with StreamingGenerator(StreamingConfig(tiny_styled_bundle,
                                            BackendConfig("onnxruntime-cpu"))) as gen:
        want = gen.generate(audio, 16000, style="wide")
    np.testing.assert_allclose(np.load(out)["keypoints"], want.keypoints, atol=1e-3)
    assert main(["stream", str(tiny_styled_bundle), str(wav), "--out", str(out),
                 "--backend", "onnxruntime-cpu", "--style", "loud"]) == 2
    assert "unknown style 'loud'" in capsys.readouterr().err
