"""``gesturert demo``: the main job on the shipped default bundle, end to end.

    gesturert demo [--audio my.wav] [--bundle DIR] [--out out/demo] [--no-video]
                   [--backend auto] [--chunk-ms 20] [--realtime] [--seed 0]
                   [--styles A,B]

Streams the speech (default: the shipped sample ``sdk/data/samples/speech_en.flac``)
through the bundle (default: the shipped ``sdk/data/default_bundle/``) in ``--chunk-ms``
chunks in simulated real time: without waiting, each chunk "arrives" on a virtual clock
when its audio would have been spoken, and the end-to-end latency of frame k (its last
audio sample -> the frame out: lookahead, feature window, chunk wait and compute) is
measured on that clock (``--realtime`` really waits, as ``gesturert stream --realtime``).
Then it scores the frames with the bundle's PoseSyncNet (PSD, offset sweep) and writes
to ``--out``:

* ``demo.mp4``: the skeleton video with the speech as its audio track (ffmpeg from
  imageio-ffmpeg: raw RGB frames piped in, the wav as a second input); ``demo.gif``
  (no sound) when ffmpeg is not available;
* ``demo.png``: saliency and per-clip sync distance over time, and the offset sweep;
* ``frames.npz``: the pose frames (keypoints in pixels, saliency, time, index).

With ``--styles A,B`` (two of the bundle's gesture styles) the stream runs in style A and
the same audio and seed once more in style B; the video shows A (left) and B (right) side
by side, and the PSD of each is printed.

matplotlib and imageio-ffmpeg (the ``demo`` extra) are imported only when writing.
The PSD comes from :mod:`sdk.bundle_psd`, as in ``gesturert validate``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

from sdk.audio import AudioError, load_audio
from sdk.bundle import Bundle, BundleError
from sdk.bundle_psd import FramesPsd, frames_psd, mean_pose_psd, posesync_embed_fn
from sdk.cli_commands import _percentiles, _simulate
from sdk.frames import PoseFrames
from sdk.mfcc import MfccMatrices
from sdk.pose_range import describe_range
from sdk.render import fit_to_canvas, render_video_frames
from sdk.runners.select import BACKENDS, BackendConfig, BackendError
from sdk.skeleton import Skeleton
from sdk.stream import StreamError
from sdk.streaming import GeneratorConfig, StreamingGenerator

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_BUNDLE = DATA_DIR / "default_bundle"
SPEECH_SAMPLE = DATA_DIR / "samples" / "speech_en.flac"
DEFAULT_OUT = Path("out/demo")
VIDEO_SIZE = (320, 320)  # (width, height) pixels; even, as yuv420p needs
FRAMING_PERCENTILES = (1.0, 99.0)  # of joint coordinates: the box the video frames
RENDER_BATCH = 32  # frames rendered per batch (a float32 canvas of 32 frames is ~39 MB)


# ---------------------------------------------------------------- outputs
def write_video(path: Path, pixels: np.ndarray, saliency: np.ndarray, fps: int,
                audio: np.ndarray, sample_rate: int, skeleton: Skeleton,
                size: tuple[int, int] = VIDEO_SIZE,
                beside: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """Render poses and write ``path`` (.mp4 with the audio; .gif without ffmpeg).

    Args:
        pixels: (T, J, 2) keypoints in any pixel frame (fitted to the canvas here).
        saliency: (T,) float32 in [0, 1], drawn as the bottom bar.
        audio: (N,) float32 mono at ``sample_rate``, the mp4's sound track.
        skeleton: the joint layout (the bundle manifest's ``skeleton``).
        beside: (pixels (T, J, 2), saliency (T,)) of a second sequence drawn to the right
            of the first on a canvas twice as wide, both placed by one transform (the
            demo's two styles).
    Returns:
        The file written (the .gif path when falling back).
    """
    frames = len(pixels) if beside is None else min(len(pixels), len(beside[0]))
    both = pixels[:frames] if beside is None else np.concatenate([pixels[:frames],
                                                                  beside[0][:frames]])
    fitted = frame_for_video(both, size)
    width, height = size[0] * (1 if beside is None else 2), size[1]

    def render(i: int) -> np.ndarray:
        part = slice(i, min(i + RENDER_BATCH, frames))
        left = render_video_frames(fitted[part], skeleton, size, saliency=saliency[part])
        if beside is None:
            return left
        right = render_video_frames(fitted[frames:][part], skeleton, size,
                                    saliency=beside[1][part])
        return np.concatenate([left, right], axis=2)  # (t, H, 2W, 3)

    batches = (render(i) for i in range(0, frames, RENDER_BATCH))
    try:
        import imageio_ffmpeg

        ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        gif = path.with_suffix(".gif")
        print(f"ffmpeg unavailable ({exc}); writing {gif} without sound instead "
              "(pip install 'gesturert[demo]' for the mp4)", file=sys.stderr)
        return _write_gif(gif, np.concatenate(list(batches)), fps)
    with tempfile.TemporaryDirectory(prefix="gesturert-demo-") as tmp:
        wav = Path(tmp) / "speech.wav"
        soundfile.write(wav, audio, sample_rate, subtype="PCM_16")
        command = [ffmpeg, "-y", "-loglevel", "error",
                   "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
                   "-framerate", str(fps), "-i", "-", "-i", str(wav),
                   "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                   "-c:a", "aac", "-movflags", "+faststart", str(path)]
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        assert process.stdin is not None and process.stderr is not None  # PIPE set above
        try:
            for batch in batches:
                process.stdin.write(np.ascontiguousarray(batch).tobytes())
        except BrokenPipeError:
            pass  # ffmpeg stopped early: its message follows
        process.stdin.close()
        error = process.stderr.read().decode(errors="replace")
        if process.wait() != 0:
            raise RuntimeError(f"ffmpeg failed writing {path}: {error.strip()}")
    return path


def frame_for_video(pixels: np.ndarray, size: tuple[int, int],
                    percentiles: tuple[float, float] = FRAMING_PERCENTILES) -> np.ndarray:
    """Place a pose sequence on the canvas: one scale and offset for all frames.

    Like :func:`sdk.render.fit_to_canvas` (whose transform this reuses), but fitted to the
    ``percentiles`` of the joint coordinates over the sequence instead of their extremes,
    so that a few far-off joints (a hand flung out in a few frames) do not shrink the
    speaker to a dot; those joints run off the canvas instead.

    Args:
        pixels: (T, J, 2) float32 coordinates, x right, y down; NaN = missing.
        size: canvas (width, height).
    Returns:
        (T, J, 2) float32 canvas pixels.
    """
    finite = pixels[np.isfinite(pixels).all(axis=-1)]  # (N, 2)
    if finite.size == 0:
        return np.asarray(pixels, np.float32).copy()
    box = np.percentile(finite, percentiles, axis=0).astype(np.float32)  # (2, 2): lo, hi
    placed = fit_to_canvas(box[None], size)[0]  # where the box corners land
    span = np.where(box[1] > box[0], box[1] - box[0], 1.0)
    scale = float(np.min(np.where(box[1] > box[0], (placed[1] - placed[0]) / span, np.inf)))
    scale = scale if np.isfinite(scale) else 1.0
    centre_in, centre_out = box.mean(axis=0), placed.mean(axis=0)
    return ((pixels - centre_in) * scale + centre_out).astype(np.float32)


def _write_gif(path: Path, rgb: np.ndarray, fps: int) -> Path:
    """(T, H, W, 3) uint8 -> an animated GIF through Pillow (matplotlib's dependency)."""
    from PIL import Image

    images = [Image.fromarray(frame) for frame in rgb]
    images[0].save(path, save_all=True, append_images=images[1:], loop=0,
                   duration=round(1000 / fps))
    return path


def write_plot(path: Path, frames: PoseFrames, scores: FramesPsd | None) -> Path:
    """PNG: saliency over time, per-clip sync distance d over time, the offset sweep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 3 if scores is not None else 1
    fig, axes = plt.subplots(panels, 1, figsize=(9, 2.4 * panels), squeeze=False)
    ax = axes[0, 0]
    ax.plot(frames.time, frames.saliency, color="tab:red", lw=1.2)
    ax.set(ylabel="saliency", ylim=(-0.02, 1.02), xlabel="time (s)",
           title="salient-posture score per frame")
    if scores is not None:
        sweep = scores.sweep
        ax = axes[1, 0]
        ax.plot(scores.clip_time, scores.clip_distance, color="tab:blue", lw=1.2,
                label="d of the clip centred here")
        ax.axhline(sweep.psd, color="k", ls="--", lw=1, label=f"PSD {sweep.psd:.4f}")
        ax.set(ylabel="sync distance d", xlabel="time (s)",
               title="PoseSyncNet distance over time (lower = better in sync)")
        ax.legend(loc="upper right", fontsize=8)
        ax = axes[2, 0]
        ax.plot(sweep.offsets, sweep.mean_distance, "o-", color="tab:green", ms=3)
        ax.axvline(sweep.best_offset, color="k", ls=":", lw=1)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set(xlabel="offset (pose frames; + = poses lag the audio)", ylabel="mean d",
               title=f"offset sweep: best {sweep.best_offset:+d} frames, confidence "
                     f"{sweep.confidence:.4f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- streaming
def stream_on_virtual_clock(generator: StreamingGenerator, audio: np.ndarray, rate: int,
                            chunk_ms: float, seed: int = 0, style: str | None = None
                            ) -> tuple[PoseFrames, list[float], list[float], float]:
    """Stream ``audio`` in ``chunk_ms`` chunks without waiting, timing latency as if live.

    Chunk i "arrives" on a virtual clock when its last sample would have arrived from a
    microphone (``end_i / rate`` s after the start); the wall time the generator then
    spends (steps and pop) is added. Frame k's end-to-end latency = that arrival + that
    compute - the arrival of frame k's last audio sample (``min(N, ceil((k+1) rate / fps))
    / rate``): lookahead, MFCC window, chunk wait and compute, as ``gesturert stream
    --realtime`` measures with real sleeping. After the last chunk, ``input_finished``
    arrives at ``N / rate``.

    Args:
        audio: (N,) or (N, C) samples at ``rate`` Hz (any dtype ``accept_waveform`` takes).
        style: the stream's gesture style (None: the bundle's default).
    Returns:
        (frames, step seconds, end-to-end seconds per frame, wall seconds).
    """
    fps, total = generator.fps, audio.shape[0]
    chunk = max(1, round(chunk_ms * rate / 1000))
    step_times: list[float] = []
    latencies: list[float] = []
    parts: list[PoseFrames] = []
    start = time.perf_counter()
    with generator.create_stream(seed=seed, style=style) as stream:
        def drain(arrival: float, handed: float) -> None:
            while generator.is_ready(stream):
                begin = time.perf_counter()
                generator.step([stream])
                step_times.append(time.perf_counter() - begin)
            got = stream.pop_frames()
            compute = time.perf_counter() - handed
            for k in got.index:
                complete = min(total, -(-(int(k) + 1) * rate // fps)) / rate
                latencies.append(arrival + compute - complete)
            parts.append(got)

        for first in range(0, total, chunk):
            handed = time.perf_counter()
            stream.accept_waveform(audio[first:first + chunk], rate)
            drain(min(first + chunk, total) / rate, handed)
        handed = time.perf_counter()
        stream.input_finished()
        drain(total / rate, handed)
    frames = PoseFrames.concatenate(parts, generator.num_joints)
    return frames, step_times, latencies, time.perf_counter() - start


# ---------------------------------------------------------------- the command
def register_demo(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "demo", help="stream speech through the default bundle: summary, video, plot",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", type=Path, default=SPEECH_SAMPLE,
                        help="speech file (default: the shipped sample speech_en.flac)")
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE,
                        help="bundle directory or .tar (default: sdk/data/default_bundle)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="output directory (default out/demo)")
    parser.add_argument("--no-video", action="store_true", help="skip the video")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="inference backend (default auto)")
    parser.add_argument("--chunk-ms", type=float, default=20.0,
                        help="audio chunk length in milliseconds (default 20)")
    parser.add_argument("--realtime", action="store_true",
                        help="hand chunks over at the pace of live audio (default: virtual clock)")
    parser.add_argument("--seed", type=int, default=0, help="stream seed (default 0)")
    parser.add_argument("--styles", default=None, metavar="A,B",
                        help="two of the bundle's gesture styles, rendered side by side "
                             "(default: one video in the bundle's default style)")
    parser.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """The ``demo`` command; returns the exit code (2 for unusable input)."""
    if not args.chunk_ms > 0:
        print(f"gesturert demo: --chunk-ms must be > 0, got {args.chunk_ms}", file=sys.stderr)
        return 2
    if not args.bundle.exists():
        hint = (" The default bundle ships with the repository (sdk/data/default_bundle); "
                "restore it from git, or pass --bundle DIR with a bundle made by "
                "gesturert export." if args.bundle == DEFAULT_BUNDLE else "")
        print(f"gesturert demo: no bundle at {args.bundle}.{hint}", file=sys.stderr)
        return 2
    try:
        recording, rate = soundfile.read(args.audio, dtype="float32", always_2d=True)
        generator = StreamingGenerator(GeneratorConfig(args.bundle, BackendConfig(args.backend)))
    except (OSError, RuntimeError, ValueError) as exc:  # soundfile, BundleError, BackendError
        print(f"gesturert demo: {exc}", file=sys.stderr)
        return 2
    styles = _styles(args.styles, generator)
    if isinstance(styles, str):
        generator.close()
        print(f"gesturert demo: {styles}", file=sys.stderr)
        return 2
    args.style = styles[0] if styles else None
    second: PoseFrames | None = None
    with generator:
        try:
            if args.realtime:  # real sleeping, wall-clock latency (gesturert stream's)
                frames, step_times, latencies, wall = _simulate(generator, recording, int(rate),
                                                                args)
            else:
                frames, step_times, latencies, wall = stream_on_virtual_clock(
                    generator, recording, int(rate), args.chunk_ms, args.seed, args.style)
            if styles:
                second = generator.generate(recording, int(rate), args.seed, style=styles[1])
            speech = load_audio(args.audio, generator.manifest.features.sample_rate)
        except (StreamError, AudioError, BackendError) as exc:
            print(f"gesturert demo: {args.audio}: {exc}", file=sys.stderr)
            return 2
    manifest = generator.manifest
    seconds = recording.shape[0] / rate
    print(f"backend: {generator.backend.describe()}")
    print(f"audio: {_shown(args.audio)} ({seconds:.2f} s at {rate} Hz), {args.chunk_ms:g} ms "
          f"chunks, {'in real time' if args.realtime else 'simulated real time (virtual clock)'}"
          f"; bundle {_shown(args.bundle)}")
    print(f"frames: {len(frames)} at {generator.fps} fps, lookahead "
          f"{generator.lookahead_frames} frames, algorithmic latency "
          f"{generator.algorithmic_latency_seconds * 1e3:.1f} ms")
    print(f"step latency (compute): {_percentiles(step_times)} steps")
    print(f"end-to-end latency (last audio sample of a frame -> the frame out): "
          f"{_percentiles(latencies)} frames")
    print(f"wall time {wall:.3f} s for {seconds:.2f} s of audio (real-time factor "
          f"{wall / max(seconds, 1e-9):.3f})")
    if styles:
        print(f"styles: {styles[0]} (left) and {styles[1]} (right) of "
              f"{', '.join(generator.styles)}")
    scores = _score(generator.bundle, speech, frames)
    print(describe_range(manifest.pose_range, manifest.normalization, frames.keypoints))
    if second is not None:
        print(f"style {styles[1]}: ", end="")
        _score(generator.bundle, speech, second)
    args.out.mkdir(parents=True, exist_ok=True)
    npz = args.out / "frames.npz"
    frames.save_npz(npz, fps=np.array(generator.fps))
    written = [npz]
    try:
        written.append(write_plot(args.out / "demo.png", frames, scores))
    except ImportError as exc:
        print(f"plot skipped: matplotlib is not installed ({exc}); "
              "pip install 'gesturert[demo]'", file=sys.stderr)
    if not args.no_video:
        written.append(write_video(args.out / "demo.mp4", frames.keypoints, frames.saliency,
                                   generator.fps, speech, manifest.features.sample_rate,
                                   manifest.skeleton, beside=None if second is None else (
                                       second.keypoints, second.saliency)))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _styles(text: str | None, generator: StreamingGenerator) -> list[str] | str:
    """``--styles A,B`` as two style names ([] without the option), or the error text."""
    if text is None:
        return []
    names = [n.strip() for n in text.split(",")]
    if len(names) != 2 or not all(names):
        return f"--styles takes two style names separated by a comma, got {text!r}"
    unknown = [n for n in names if n not in generator.styles]
    if unknown:
        return (f"--styles: {unknown} not among the bundle's styles "
                f"{list(generator.styles)}")
    return names


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (shorter output)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _score(bundle: Bundle, speech: np.ndarray, frames: PoseFrames) -> FramesPsd | None:
    """PSD of the streamed frames, printed; None (with the reason printed) when unavailable."""
    manifest = bundle.manifest
    try:
        matrices = MfccMatrices.load(bundle.path(manifest.mfcc_matrices), manifest.features)
        embed, runner = posesync_embed_fn(bundle)
        try:
            canonical = manifest.normalization.pixels_to_canonical(frames.keypoints)
            scores = frames_psd(manifest, matrices, embed, speech, canonical)
            still = mean_pose_psd(manifest, matrices, embed, speech, len(frames)).sweep
        finally:
            runner.deactivate()
    except (BundleError, ValueError) as exc:
        print(f"PSD: not measured ({exc})")
        return None
    sweep, reference = scores.sweep, manifest.psd_reference
    print(f"PSD: {sweep.psd:.4f} over {sweep.num_clips} clips (lower = better in sync); "
          f"offset estimate {sweep.best_offset:+d} frames (sweep ±{sweep.offsets[-1]}), "
          f"confidence {sweep.confidence:.4f}"
          + (f"; the bundle's reference on its sample: {reference.value:.4f}, offset "
             f"{reference.offset:+d}" if reference is not None else ""))
    print(f"PSD of the mean pose held still on the same audio: {still.psd:.4f} (the "
          f"generator's is {sweep.psd / still.psd:.2f} of it; near 1: the judge cannot tell "
          f"this motion from none)")
    return scores
