"""Bad input: the generated corpus (tests/reliability/make_bad_inputs.py) through
``load_audio`` in a subprocess and through streams at each file's own rate and dtype;
bad chunks mid-stream; 1-sample and 10-minute chunks.

Every case ends in a clear error naming the problem, or in exactly
``num_pose_frames(model_rate_samples(N, rate, 16000))`` finite frames; a stream that
refused a chunk goes on as if the chunk had never been offered.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from helpers_bundle import tiny_bundle  # noqa: F401  (session fixture)
from helpers_streaming import run_chunks

from reliability.make_bad_inputs import CorpusFile, speechlike, write_corpus
from sdk import StreamingGenerator
from sdk.audio import AudioError, load_audio
from sdk.features import DEFAULT_FEATURES
from sdk.frames import PoseFrames
from sdk.runners.select import BackendConfig
from sdk.streaming import GeneratorConfig, Stream, StreamError, model_rate_samples

SCRIPT = Path(__file__).with_name("make_bad_inputs.py")
REPO = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-5  # canonical units; mixing channels in float32 vs float64 differs by ~1e-7
_SUBTYPE_DTYPE = {"PCM_16": "int16", "PCM_32": "int32", "FLOAT": "float32", "DOUBLE": "float64"}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[CorpusFile]]:
    root = tmp_path_factory.mktemp("bad_inputs")
    return root, write_corpus(root)


@pytest.fixture(scope="module")
def gen(tiny_bundle: Path) -> Iterator[StreamingGenerator]:  # noqa: F811
    config = GeneratorConfig(tiny_bundle, BackendConfig("onnxruntime-cpu", intra_op_num_threads=1))
    with StreamingGenerator(config) as generator:
        yield generator


def expected_frames(gen: StreamingGenerator, n: int, rate: int) -> int:
    features = gen.manifest.features
    return features.num_pose_frames(model_rate_samples(n, rate, features.sample_rate))


def run_stream(gen: StreamingGenerator, chunks: list[tuple[Any, int]], seed: int = 0,
               refused: tuple[Any, int, str] | None = None, refuse_at: int = -1
               ) -> PoseFrames:
    """Feed ``chunks`` (samples, rate), stepping whenever ready; before chunk ``refuse_at``
    offer ``refused`` = (samples, rate, message) and check it is refused and changes nothing."""

    def refuse(i: int, stream: Stream) -> None:
        if refused is not None and i == refuse_at:
            accepted, emitted = stream.num_samples_accepted, stream.num_frames_emitted
            with pytest.raises(StreamError, match=refused[2]):
                stream.accept_waveform(refused[0], refused[1])
            assert (stream.num_samples_accepted, stream.num_frames_emitted) == (
                accepted, emitted)

    return run_chunks(gen, chunks, seed, refuse)


def assert_valid_frames(gen: StreamingGenerator, frames: PoseFrames, count: int) -> None:
    """Exactly ``count`` frames 0..count-1 at k / fps, finite, saliency in [0, 1]."""
    assert len(frames) == count
    np.testing.assert_array_equal(frames.index, np.arange(count))
    np.testing.assert_array_equal(frames.time, np.arange(count) / np.float64(gen.fps))
    assert np.isfinite(frames.keypoints).all() and np.isfinite(frames.saliency).all()
    assert ((frames.saliency >= 0) & (frames.saliency <= 1)).all()


def assert_close(gen: StreamingGenerator, got: PoseFrames, want: PoseFrames, tol: float) -> None:
    np.testing.assert_array_equal(got.index, want.index)
    norm = gen.manifest.normalization
    diff = np.abs(norm.pixels_to_canonical(got.keypoints)
                  - norm.pixels_to_canonical(want.keypoints)).max(initial=0.0)
    sal = np.abs(got.saliency - want.saliency).max(initial=0.0)
    assert diff <= tol and sal <= tol, f"canonical {diff:.2e}, saliency {sal:.2e}"


# ---- files ----
def test_loading_every_corpus_file_in_a_subprocess_never_crashes(
        corpus: tuple[Path, list[CorpusFile]]) -> None:
    root, entries = corpus
    done = subprocess.run([sys.executable, str(SCRIPT), "--load", str(root)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    started = [x["name"] for x in lines if x["status"] == "start"]
    finished = {x["name"]: x for x in lines if x["status"] != "start"}
    crashed = [name for name in started if name not in finished]
    assert done.returncode == 0 and not crashed, (
        f"load_audio crashed the process (exit {done.returncode}) on {crashed}: {done.stderr}")
    assert sorted(finished) == sorted(e.name for e in entries)
    for entry in entries:
        result = finished[entry.name]
        assert result["status"] == entry.expect, (entry.name, result)
        if entry.expect == "ok":
            assert result["samples"] == model_rate_samples(entry.frames, entry.rate, 16000)
            assert result["finite"] and result["dtype"] == "float32", entry.name
        else:
            assert str(root / entry.name) in result["message"], result
            assert re.search(entry.message, result["message"]), (
                entry.name, result["message"])


def test_errors_are_audio_errors_naming_the_file(corpus: tuple[Path, list[CorpusFile]]) -> None:
    root, entries = corpus
    for entry in (e for e in entries if e.expect == "error"):
        with pytest.raises(AudioError, match=entry.message) as info:
            load_audio(root / entry.name)
        assert entry.name in str(info.value)
    with pytest.raises(AudioError, match="does not exist"):
        load_audio(root / "no_such_file.wav")
    with pytest.raises(AudioError, match="is a directory"):
        load_audio(root)


def test_every_loadable_file_streams_at_its_own_rate_with_exact_frames(
        gen: StreamingGenerator, corpus: tuple[Path, list[CorpusFile]]) -> None:
    """Raw file samples (native dtype, rate, channels) in uneven chunks, with a NaN chunk
    refused on the way, give the frames of the file loaded with load_audio."""
    root, entries = corpus
    sizes = [1, 2, 333, 4801, 17, 12000]
    for k, entry in enumerate(e for e in entries if e.expect == "ok"):
        path = root / entry.name
        dtype = _SUBTYPE_DTYPE[soundfile.info(str(path)).subtype]
        raw, rate = soundfile.read(str(path), dtype=dtype, always_2d=entry.channels > 1)
        assert rate == entry.rate and raw.shape[0] == entry.frames
        chunks: list[tuple[Any, int]] = []
        first = 0
        while first < len(raw):
            size = sizes[len(chunks) % len(sizes)]
            chunks.append((raw[first:first + size], rate))
            first += size
        nan = np.full((5, entry.channels) if entry.channels > 1 else 5, np.nan)
        streamed = run_stream(gen, chunks, seed=k, refused=(nan, rate, "NaN or Inf"),
                              refuse_at=len(chunks) // 2)
        assert_valid_frames(gen, streamed, expected_frames(gen, entry.frames, rate))
        offline = gen.generate(load_audio(path), gen.manifest.features.sample_rate, seed=k)
        assert_close(gen, streamed, offline, TOLERANCE)


def test_the_stream_command_streams_or_refuses_every_corpus_file(
        tiny_bundle: Path, corpus: tuple[Path, list[CorpusFile]], tmp_path: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    """``gesturert stream`` (in-process): exit 0 with exactly the right frames, or exit 2
    with the load_audio message. It read files with soundfile alone before, so a
    truncated WAV streamed its first half silently."""
    from sdk.cli import main

    root, entries = corpus
    for entry in entries:
        out = tmp_path / f"{entry.name}.npz"
        code = main(["stream", str(tiny_bundle), str(root / entry.name), "--out", str(out),
                     "--backend", "onnxruntime-cpu", "--chunk-ms", "7"])
        err = capsys.readouterr().err
        if entry.expect == "ok":
            assert code == 0, (entry.name, err)
            frames = np.load(out)["index"]
            features = DEFAULT_FEATURES
            assert len(frames) == features.num_pose_frames(model_rate_samples(
                entry.frames, entry.rate, features.sample_rate)), entry.name
        else:
            assert code == 2 and not out.exists(), (entry.name, err)
            assert entry.name in err and re.search(entry.message, err), (entry.name, err)
            assert "Traceback" not in err


# ---- chunks ----
BAD_CHUNKS = [
    (lambda x: np.where(np.arange(len(x))[:, None] == 7, np.nan, x), None, r"NaN or Inf \(first "
     r"at sample 7"),
    (lambda x: np.full_like(x, np.inf), None, "NaN or Inf"),
    (lambda x: x.astype(np.int8), None, "dtype int8"),
    (lambda x: x.T.copy(), None, "pass samples.T"),  # (C, N): channels first
    (lambda x: x[None], None, "expected shape"),
    (lambda x: x[:, :1].repeat(40, axis=1), None, "1..32 channels"),
    (lambda x: x, 44100, "sample_rate changed from 48000 to 44100"),
    (lambda x: x, 0, "positive integer"),
    (lambda x: x, 48000.0, "positive integer"),
    (lambda x: x, 1, "sample_rate 1 Hz is outside the supported 4000..768000 Hz"),
    (lambda x: x, 2**63 - 1, "is outside the supported"),  # soxr never returned for this
]


@pytest.mark.parametrize("make_bad, bad_rate, message", BAD_CHUNKS,
                         ids=["nan", "inf", "int8", "channels-first", "3-d", "40-channels",
                              "rate-change", "rate-zero", "rate-float", "rate-1hz",
                              "rate-2**63"])
def test_a_refused_chunk_mid_stream_loses_nothing(gen: StreamingGenerator, make_bad: Any,
                                                  bad_rate: int | None, message: str) -> None:
    """48 kHz stereo float64 in 0.1 s chunks; a bad chunk offered before chunk 6 is refused
    and the frames are bit-identical to the run that never saw it."""
    audio = speechlike(48000, 1.5, channels=2, seed=3)
    chunks = [(audio[i:i + 4800], 48000) for i in range(0, len(audio), 4800)]
    clean = run_stream(gen, chunks, seed=5)
    bad = make_bad(audio[:960])
    rate = 48000 if bad_rate is None else bad_rate
    refused = run_stream(gen, chunks, seed=5, refused=(bad, rate, message), refuse_at=6)
    assert_valid_frames(gen, refused, expected_frames(gen, len(audio), 48000))
    assert_close(gen, refused, clean, 0.0)


def test_one_sample_chunks_at_44100_hz_give_the_offline_frames(gen: StreamingGenerator) -> None:
    audio = (speechlike(44100, 0.4, seed=4)[:, 0] * 32767).astype(np.int16)
    streamed = run_stream(gen, [(audio[i:i + 1], 44100) for i in range(len(audio))], seed=2)
    assert_valid_frames(gen, streamed, expected_frames(gen, len(audio), 44100))
    assert_close(gen, streamed, gen.generate(audio, 44100, seed=2), 0.0)


@pytest.mark.slow
def test_a_ten_minute_stereo_int16_chunk_at_8_khz(gen: StreamingGenerator) -> None:
    rate, seconds = 8000, 600
    block = (speechlike(rate, 10.0, channels=2, seed=6) * 32767).astype(np.int16)
    audio = np.tile(block, (seconds // 10, 1))  # (4.8M, 2) int16, 19 MB
    frames = run_stream(gen, [(audio, rate)], seed=1)
    assert_valid_frames(gen, frames, expected_frames(gen, len(audio), rate))
    assert len(frames) == seconds * gen.fps
    head = gen.generate(audio[: 5 * rate], rate, seed=1)
    keep = len(head) - gen.lookahead_frames - 2  # before the short clip's padded tail
    cut = PoseFrames(*(x[:keep] for x in (frames.keypoints, frames.saliency, frames.time,
                                          frames.index)))
    assert_close(gen, cut, PoseFrames(*(x[:keep] for x in (
        head.keypoints, head.saliency, head.time, head.index))), TOLERANCE)
