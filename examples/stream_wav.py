"""Stream a speech file through gesturert as if it came from a microphone, printing poses.

    python examples/stream_wav.py BUNDLE speech.wav [--fast] [--chunk-ms 20] [--backend auto]

The file is read at its own sample rate as 16-bit PCM and handed to the stream in small
chunks at the pace of live audio (``--fast``: no waiting, for CI). After each chunk the
generator steps while the stream is ready, and every new pose frame is printed with its
timestamp, saliency, two wrists in pixels and how long after its audio it came out.
Uses only the public API: ``from sdk import StreamingGenerator``.
"""

from __future__ import annotations

import argparse
import time

import soundfile

from sdk import StreamingGenerator


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", help="bundle directory or .tar")
    parser.add_argument("audio", help="speech file (wav, flac, ogg, ...)")
    parser.add_argument("--fast", action="store_true", help="do not wait for real time")
    parser.add_argument("--chunk-ms", type=float, default=20.0, help="chunk length (ms)")
    parser.add_argument("--backend", default="auto", help="auto | onnxruntime | tensorrt")
    args = parser.parse_args()

    pcm, rate = soundfile.read(args.audio, dtype="int16")  # (N,) or (N, C) int16
    chunk = max(1, int(rate * args.chunk_ms / 1000))
    with StreamingGenerator(args.bundle, backend=args.backend) as gen:
        print(gen.describe())
        names = gen.manifest.skeleton.joint_names
        wrists = [names.index("right_wrist"), names.index("left_wrist")]
        start = time.perf_counter()
        with gen.create_stream(seed=0) as stream:

            def show_new_frames() -> None:
                while gen.is_ready(stream):
                    gen.step([stream])
                frames = stream.pop_frames()
                for k in range(len(frames)):
                    audio_end = (frames.index[k] + 1) / gen.fps  # seconds into the file
                    lag_ms = (time.perf_counter() - start - audio_end) * 1e3
                    (rx, ry), (lx, ly) = frames.keypoints[k, wrists]
                    print(f"frame {frames.index[k]:4d}  t={frames.time[k]:6.3f}s  "
                          f"saliency={frames.saliency[k]:.2f}  right wrist=({rx:6.1f},{ry:6.1f})"
                          f"  left wrist=({lx:6.1f},{ly:6.1f})"
                          + ("" if args.fast else f"  {lag_ms:6.1f} ms after its audio"))

            for first in range(0, len(pcm), chunk):
                if not args.fast:  # wait until this chunk would have been recorded
                    due = start + min(first + chunk, len(pcm)) / rate
                    time.sleep(max(0.0, due - time.perf_counter()))
                stream.accept_waveform(pcm[first:first + chunk], sample_rate=rate)
                show_new_frames()
            stream.input_finished()
            show_new_frames()
            print(f"{stream.num_frames_emitted} frames for {len(pcm) / rate:.2f} s of audio")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
