"""scripts/refresh_bundle_results.py: the pieces that rewrite committed files."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
from helpers_scripts import load_script

REPO = Path(__file__).resolve().parents[1]


def _script() -> ModuleType:
    return load_script("refresh_bundle_results")


def test_the_demo_block_is_replaced_and_nothing_else() -> None:
    script = _script()
    readme = ("intro\n" + script.DEMO_MARK + "old line 1\nold line 2\n```\n\nafter\n"
              "```text\nanother block\n```\n")
    new = script.replace_demo_block(readme, "new output\nsecond line\n")
    assert new == ("intro\n" + script.DEMO_MARK + "new output\nsecond line\n```\n\nafter\n"
                   "```text\nanother block\n```\n")
    with pytest.raises(ValueError, match="no block"):
        script.replace_demo_block("no demo here\n", "x")
    with pytest.raises(ValueError, match="not closed"):
        script.replace_demo_block(script.DEMO_MARK + "open", "x")


def test_the_committed_readme_has_the_demo_block() -> None:
    script = _script()
    readme = (REPO / "README.md").read_text()
    assert script.replace_demo_block(readme, "x").count(script.DEMO_MARK) == 1


def test_the_committed_robustness_table_is_its_json() -> None:
    """default_bundle.md is written from default_bundle.json (it once kept an older bundle's
    numbers after the JSON moved on)."""
    script = _script()
    folder = REPO / "benchmarks" / "results" / "robustness"
    result = json.loads((folder / "default_bundle.json").read_text())
    assert (folder / "default_bundle.md").read_text() == script.robustness_markdown(result), \
        "regenerate: python scripts/refresh_bundle_results.py --skip voices validate tamper " \
        "validation-doc demo resampler-quality doc-results"
    changed = json.loads(json.dumps(result))
    next(iter(changed["results"].values()))["mean_abs_z"] += 1.0
    assert script.robustness_markdown(changed) != script.robustness_markdown(result)
