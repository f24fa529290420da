"""The voiced half of ``gesturert data synth --voices`` and ``gesturert data voices``
(kept out of :mod:`train.data.cli` so that module stays light and small)."""

from __future__ import annotations

import argparse
import sys
import time


def run_voiced_synth(args: argparse.Namespace) -> int:
    """Write a voiced corpus (:func:`train.data.voice_corpus.synthesize_voice_corpus`)."""
    from tqdm import tqdm

    from sdk.features import DEFAULT_FEATURES
    from train.data.espeak import EspeakUnavailable
    from train.data.flite import FliteUnavailable
    from train.data.sdt import SDT_CLIP_FRAMES
    from train.data.voice_corpus import TimingCheckFailed, synthesize_voice_corpus
    from train.data.voices import held_out_names, select_voices

    try:
        voices = select_voices(args.voices)
        held = held_out_names(args.held_out_voices, voices)
    except ValueError as exc:
        print(f"gesturert data synth: {exc}", file=sys.stderr)
        return 2
    if not args.minutes > 0:
        print(f"gesturert data synth: need --minutes > 0, got {args.minutes}", file=sys.stderr)
        return 2
    clip_s = SDT_CLIP_FRAMES / DEFAULT_FEATURES.fps
    total = len(voices) * int(args.minutes * 60.0 // clip_s)
    started = time.perf_counter()
    with tqdm(total=total, unit="clip", desc="synth", disable=args.no_progress) as bar:
        try:
            summary = synthesize_voice_corpus(args.out, voices, args.minutes, args.seed, held,
                                              overwrite=args.overwrite,
                                              on_clip=lambda: bar.update(1),
                                              articulation=args.articulation,
                                              styles=args.styles)
        except (ValueError, FileExistsError, EspeakUnavailable, FliteUnavailable,
                TimingCheckFailed) as exc:
            bar.close()
            print(f"gesturert data synth: {exc}", file=sys.stderr)
            return 2
    print(f"wrote {len(summary.speakers)} voice(s) x {summary.clips_per_speaker} clips "
          f"({100 * summary.salient_frame_fraction:.1f}% salient frames; held out: "
          f"{', '.join(summary.held_out) or 'none'}; {summary.phrases_untimed} phrase(s) "
          f"espeak could not time, skipped) to {summary.root} "
          f"in {time.perf_counter() - started:.1f} s")
    return 0


def print_voices() -> int:
    """Print the voice table: name, engine voice, language, gender, rate, pitch, licence."""
    from train.data import espeak, flite
    from train.data.voices import VOICES

    print(f"{'voice':<18} {'engine voice':<16} {'lang':<4} {'gender':<6} {'wpm':>4} "
          f"{'pitch':>5}  model distributable  licence")
    for v in VOICES:
        print(f"{v.name:<18} {v.engine_voice:<16} {v.language:<4} {v.gender:<6} "
              f"{v.rate_wpm:>4} {v.pitch:>5}  {'yes' if v.model_distributable else 'no':<19}  "
              f"{v.licence}")
    for engine, ready in (("espeak-ng", espeak.available()), ("flite", flite.available())):
        print(f"{engine}: {'installed' if ready else 'NOT installed (run `make voices`)'}")
    return 0
