"""`gesturert bench --serve --fleet`: a tiny real run through HAProxy, and the verdicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers_fleet import balancer_missing

from benchmarks.serve_fleet import run_fleet_bench
from benchmarks.serve_fleet_report import GOAL_ADDED_P99_MS, _added_verdict
from sdk.demo import DEFAULT_BUNDLE


@pytest.mark.slow
def test_a_tiny_fleet_run_measures_both_paths_and_both_process_counts(tmp_path: Path) -> None:
    reason = balancer_missing("haproxy")
    if reason:
        pytest.skip(reason)
    paths = run_fleet_bench(DEFAULT_BUNDLE, tmp_path, 1.5, counts=(2,), latency_clients=2,
                            rounds=2, balancers=("haproxy",))
    assert [p.name for p in paths] == ["serve_fleet.json", "serve_fleet.md", "serve_fleet.png"]
    result = json.loads(paths[0].read_text())
    rows = result["overhead"]["rows"]
    assert sorted((r["round"], r["path"]) for r in rows) == [
        (0, "direct"), (0, "haproxy"), (1, "direct"), (1, "haproxy")]
    for row in rows:
        assert row["errors"] == 0 and row["frames"] > 0 and row["pings"] > 10
        assert 0 < row["ping_p50_ms"] <= row["ping_p99_ms"]
    added = result["overhead"]["added"]["haproxy"]
    assert len(added["added_ping_p99_ms_per_round"]) == 2
    assert added["direct_ping_p99_spread_ms"] is not None
    for servers in ("1", "2"):
        [row] = result["runs"][servers]
        assert row["clients"] == 2 and row["errors"] == 0 and row["frames"] > 0
    assert result["machine"]["load_average"] is not None
    assert "The machine was " in paths[1].read_text()  # its load, idle or not, is stated


def _added(p99: float | None, spread: float | None) -> dict[str, Any]:
    return {"added_ping_p99_ms": p99, "direct_ping_p99_spread_ms": spread}


@pytest.mark.parametrize(("added", "verdict"), [
    (_added(0.2, 0.3), "met"),
    (_added(1.5, 0.3), "missed"),
    (_added(-8.0, 4.4), "not resolved (direct p99 varies by 4.40 ms)"),
    (_added(0.2, GOAL_ADDED_P99_MS), "not resolved"),
    (_added(0.2, None), "not resolved (one round only)"),
    (_added(None, 0.1), "not measured"),
])
def test_added_latency_is_met_only_when_the_machine_resolves_it(added: dict[str, Any],
                                                                 verdict: str) -> None:
    assert _added_verdict(added).startswith(verdict)


def test_the_docs_quote_the_committed_fleet_results() -> None:
    """docs/serving.md's capacity passage (``fleet-results:start`` .. ``fleet-results:end``)
    is generated from a committed serve_fleet.json.
    Regenerate: ``python -c "from benchmarks.serve_fleet_report import write_docs_passage;
    ..."``
    with the results file and docs/serving.md."""
    from benchmarks.serve_fleet_report import DOCS_END, DOCS_START, docs_passage

    repo = Path(__file__).resolve().parents[1]
    text = (repo / "docs" / "serving.md").read_text()
    quoted = text.split(DOCS_START)[1].split(DOCS_END)[0].strip()
    results = sorted((repo / "benchmarks" / "results").glob("*/serve_fleet.json"))
    assert results, "no committed benchmarks/results/*/serve_fleet.json"
    passages = [docs_passage(json.loads(r.read_text()), r.parent.name) for r in results]
    assert quoted in passages, "docs/serving.md does not quote a committed fleet result"
