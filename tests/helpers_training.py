"""A tiny synthetic corpus and tiny trained PoseSyncNet / FGD / generator checkpoints.

The models are a few hundred parameters trained a few steps: enough for the evaluation
and ablation commands to run end to end in seconds, not to score well.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sdk.cli import main

TINY_MINUTES = 1.5  # 21 clips: two held-out sequences of 128 frames (dev + val clips)
TINY_POSESYNC = ["run.steps=3", "run.batch_size=8", "run.threads=1", "run.eval_every=0",
                 "model.audio_channels=[4,4,4,4]", "model.pose_channels=[4,4,4,4]",
                 "model.hidden_dim=16", "model.embedding_dim=8"]
TINY_FGD = ["run.steps=3", "run.batch_size=8", "run.threads=1", "run.eval_every=0",
            "model.channels=16", "model.down_channels=[16,8]", "model.latent_dim=4"]
TINY_GENERATOR = ["run.batch_size=4", "run.threads=1", "model.body_hidden=16",
                  "model.face_hidden=8", "model.pose_hidden=16", "model.decoder_hidden=16",
                  "model.embedding_dim=8", "model.detector_hidden=8", "data.stride_frames=30"]


@dataclass(frozen=True)
class TinyRun:
    corpus: Path
    posesync: Path
    fgd: Path
    generator: Path


def _sets(overrides: list[str]) -> list[str]:
    return [a for item in overrides for a in ("--set", item)]


def make_tiny_run(root: Path, generator: bool = True) -> TinyRun:
    """Synthesise the corpus and train the tiny models under ``root`` (CLI, in process)."""
    corpus = root / "corpus"
    assert main(["data", "synth", "--out", str(corpus), "--minutes", str(TINY_MINUTES),
                 "--no-progress"]) == 0
    for what, overrides in (("posesync", TINY_POSESYNC), ("fgd", TINY_FGD),
                            ("generator", TINY_GENERATOR + ["run.steps=3"])):
        if what == "generator" and not generator:
            continue
        assert main(["train", what, "--data", str(corpus), "--out", str(root / what),
                     "--no-progress", *_sets(overrides)]) == 0
    return TinyRun(corpus, root / "posesync" / "posesync.pt", root / "fgd" / "fgd.pt",
                   root / "generator" / "generator.pt")
