"""The committed results files the docs quote, and the helpers every passage shares.

:data:`SOURCES` names each results file the passages of :mod:`benchmarks.doc_passages`
read (paths in the repository); :func:`load` parses one (cached); :func:`markdown_table`
writes a Markdown table.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
NO_GAIN = RESULTS / "training" / "no_gain_augmentation" / "rejudged"
"""issue 17's acceptance of the bundle shipped before training drew a random level, judged by
today's training-range criterion (its ``voices/`` sibling: as judged when it shipped, the
front-end study's reference)."""
SEED_1 = RESULTS / "training" / "random_level_seed_1" / "voices"
"""issue 17's acceptance of the shipped recipe with the generator trained on seed 1."""
CROSS = RESULTS / "training" / "cross_test_sets"
"""The generators of the synthetic-voice recipe, of the shipped one and of the shipped
recipe on both corpora, on both test sets."""
RANDOM_LEVEL = RESULTS / "training" / "random_level"
"""The bundle shipped before mains hum and DC offsets joined the training augmentation
(random input level in training, the recipe of the seed-1 and front-end runs)."""
SOURCES = {
    "bench": RESULTS / "2core-intel-xeon" / "bench.json",
    "evaluation": RESULTS / "training" / "evaluation.json",
    "training": RESULTS / "training" / "default_training.json",
    "robustness": RESULTS / "robustness" / "robustness.json",
    "robustness_default": RESULTS / "robustness" / "default_bundle.json",
    "manifest": ROOT / "sdk" / "data" / "default_bundle" / "manifest.json",
    "ablation_topk": RESULTS / "ablations" / "ablation_topk.json",
    "ablation_modules": RESULTS / "ablations" / "ablation_modules.json",
    "ablation_lookahead": RESULTS / "ablations" / "ablation_lookahead.json",
    "cli_start": RESULTS / "2core-amd-epyc" / "cli_start.json",
    "voices_acceptance": RESULTS / "voices" / "acceptance.json",
    "voices_acceptance_before": RESULTS / "voices" / "acceptance_synthetic_voice_bundle.json",
    "voices_recorded": RESULTS / "voices" / "recorded_voice.json",
    "voices_languages": RESULTS / "voices" / "languages_never_heard.json",
    "voices_long_stream": RESULTS / "voices" / "long_stream.json",
    "evaluation_random_level": RANDOM_LEVEL / "evaluation.json",
    "voices_random_level_quieter": RANDOM_LEVEL / "voices" / "acceptance_gain_-6db.json",
    "voices_random_level": RANDOM_LEVEL / "voices" / "acceptance.json",
    "voices_random_level_louder": RANDOM_LEVEL / "voices" / "acceptance_gain_+6db.json",
    "recorded_random_level": RANDOM_LEVEL / "voices" / "recorded_voice.json",
    "languages_random_level": RANDOM_LEVEL / "voices" / "languages_never_heard.json",
    "voices_acceptance_quieter": RESULTS / "voices" / "acceptance_gain_-6db.json",
    "voices_acceptance_louder": RESULTS / "voices" / "acceptance_gain_+6db.json",
    "voices_no_gain_quieter": NO_GAIN / "acceptance_gain_-6db.json",
    "voices_no_gain": NO_GAIN / "acceptance.json",
    "voices_no_gain_louder": NO_GAIN / "acceptance_gain_+6db.json",
    "voices_seed_1_quieter": SEED_1 / "acceptance_gain_-6db.json",
    "voices_seed_1": SEED_1 / "acceptance.json",
    "voices_seed_1_louder": SEED_1 / "acceptance_gain_+6db.json",
    "training_voices": RESULTS / "training" / "training_voices.json",
    "evaluation_before": RESULTS / "training" / "synthetic_voice_bundle" / "evaluation.json",
    "evaluation_no_gain": RESULTS / "training" / "no_gain_augmentation" / "evaluation.json",
    "cross_synthetic_recipe_on_synthetic": CROSS / "synthetic_recipe_on_synthetic_corpus.json",
    "cross_shipped_on_synthetic": CROSS / "shipped_on_synthetic_corpus.json",
    "cross_synthetic_recipe_on_voiced": CROSS / "synthetic_recipe_on_voiced_corpus.json",
    "cross_both_on_synthetic": CROSS / "both_corpora_on_synthetic_corpus.json",
    "cross_both_on_voiced": CROSS / "both_corpora_on_voiced_corpus.json",
    "lip_ceiling": RESULTS / "training" / "lip_sync_ceiling" / "voiced.json",
    "lip_ceiling_before": RESULTS / "training" / "lip_sync_ceiling" / "synthetic_voice.json",
    "lip_probe": RESULTS / "training" / "lip_probe" / "minutes_4.json",
    "lip_probe_before": RESULTS / "training" / "lip_probe" / "synthetic_voice.json",
    "resampler_quality": RESULTS / "step_gemm" / "resampler_quality.json",
    "serve_pose_range": RESULTS / "serve_ab" / "serve_ab_pose_range.json",
}


@cache
def load(source: str) -> Any:
    """The parsed JSON of a :data:`SOURCES` entry."""
    return json.loads(SOURCES[source].read_text())


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table: one header row, then ``rows`` (cells already formatted)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
