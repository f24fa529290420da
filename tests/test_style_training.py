"""Training with styles: windows carry their speaker's style, the checkpoint the style table."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from helpers_training import TINY_GENERATOR

from sdk.cli import main
from train.checkpoint import load_checkpoint
from train.config import load_config
from train.data.windows import generator_data
from train.generator_training import GeneratorTrainingConfig, with_styles


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three synthetic speakers; synth_02 is declared to gesture in synth_00's style, so
    style "synth_00" has the most windows (the default) and "synth_02" is no style."""
    out = tmp_path_factory.mktemp("styles") / "corpus"
    assert main(["data", "synth", "--out", str(out), "--speakers", "3", "--minutes", "0.6",
                 "--no-progress"]) == 0
    profile = out / "synth_02" / "synth_speaker.json"
    profile.write_text(json.dumps(json.loads(profile.read_text()) | {"style": "synth_00"}))
    return out


def _config(*extra: str) -> GeneratorTrainingConfig:
    return load_config(GeneratorTrainingConfig, None, [*TINY_GENERATOR, *extra])


def test_windows_carry_their_speakers_style_and_the_table_is_sorted(corpus: Path) -> None:
    data = generator_data(corpus, _config())
    assert data.styles == ("synth_00", "synth_01") and data.default_style == "synth_00"
    train = data.train
    seen = {train.sequences[train.windows[i][0]].speaker: int(train[i]["style"])
            for i in range(len(train))}
    assert seen == {"synth_00": 0, "synth_01": 1, "synth_02": 0}
    assert data.val is not None and {int(data.val[i]["style"]) for i in range(len(data.val))} \
        == {0, 1}


def test_the_checkpoint_carries_the_style_table(corpus: Path, tmp_path: Path) -> None:
    assert main(["train", "generator", "--data", str(corpus), "--out", str(tmp_path),
                 "--no-progress", *[a for s in (*TINY_GENERATOR, "run.steps=2",
                                                "run.eval_every=0") for a in ("--set", s)]]) == 0
    checkpoint = load_checkpoint(tmp_path / "generator.pt", "generator")
    model = checkpoint.model_config
    assert model["styles"] == ["synth_00", "synth_01"] and model["default_style"] == "synth_00"
    weights = checkpoint.model["style_embedding.weight"]
    assert tuple(weights.shape) == (2, 8)  # one row per style, embedding_dim 8
    assert torch.isfinite(weights).all()


def test_a_config_naming_other_styles_is_refused(corpus: Path) -> None:
    data = generator_data(corpus, _config())
    config = _config()
    assert with_styles(config, data).model.styles == data.styles
    wrong = dataclasses.replace(config, model=dataclasses.replace(
        config.model, styles=("x",), default_style="x"))
    with pytest.raises(ValueError, match="differ from the corpus"):
        with_styles(wrong, data)
    no_styles = dataclasses.replace(data, styles=(), default_style="")
    with pytest.raises(ValueError, match="carry no style"):
        with_styles(wrong, no_styles)
    assert with_styles(config, no_styles) is config
