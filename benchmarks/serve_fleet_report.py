"""The report of ``gesturert bench --serve --fleet``: Markdown, plot, the docs passage.

Verdicts: >= 1.8x clients kept up with on 2 processes than on 1 (through HAProxy), and
< 1 ms added p99 by the balancer, judged on the WebSocket ping round trip and called "not
resolved" when the direct path's own p99 moves between rounds by 1 ms or more.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.common import machine_state
from benchmarks.serve import COUNTS

GOAL_ADDED_P99_MS = 1.0
GOAL_SCALING = 1.8


def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _added_verdict(added: dict[str, Any]) -> str:
    """met / missed on the added ping p99, or "not resolved" when the direct path's p99
    itself moves between rounds by the goal or more (a loaded machine): then a small or
    negative difference is noise, not a pass."""
    p99, noise = added["added_ping_p99_ms"], added["direct_ping_p99_spread_ms"]
    if p99 is None:
        return "not measured"
    if noise is None or noise >= GOAL_ADDED_P99_MS:
        spread = "one round only" if noise is None else f"direct p99 varies by {noise:.2f} ms"
        return f"not resolved ({spread})"
    return "met" if p99 < GOAL_ADDED_P99_MS else "missed"


def markdown(result: dict[str, Any]) -> str:
    """The report: machine and load, added latency per balancer, clients vs processes."""
    machine = result["machine"]
    overhead = result["overhead"]
    lines = [
        "# A fleet of `gesturert serve` behind a load balancer (loopback)", "",
        f"Machine: {machine['cpu_model']}, {machine['cpu_cores']} cores, no GPU "
        f"(onnxruntime-cpu); git {machine['git_sha']}; {machine['timestamp']}. "
        f"The machine was {machine_state(machine['load_average'])}; load average at start "
        f"{machine['load_average']}, at end {result['load_average_end']}; servers, "
        "balancers and the load generator all share its cores.",
        "",
        f"Bundle `{result['bundle']}`: {result['fps']} fps, algorithmic latency "
        f"{result['algorithmic_latency_ms']:.1f} ms. Each client streams "
        f"{result['seconds_per_point']:g} s of speech in {result.get('chunk_ms', 20):g} ms pcm16 "
        "messages at the pace of a microphone; latency = speech-to-pose on the client clock, "
        "every frame of every client. Each point starts once `/healthz` answers 200 on its "
        "path (through a balancer: a backend is ready and the balancer has it up). Balancer "
        "configurations: deploy/haproxy/haproxy.cfg, deploy/nginx/gesturert.conf, addresses "
        "changed to loopback.", "",
        f"## The balancer's added latency ({overhead['clients']} clients, 1 server process, "
        f"{overhead['rounds']} alternating rounds)", "",
        "| round | path | ping p50 ms | ping p99 ms | pings | speech-to-pose p50 ms | p99 ms "
        "| fps min | errors | balancer CPU % | load avg (1 min) |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in overhead["rows"]:
        lines.append(f"| {r['round'] + 1} | {r['path']} | {_num(r['ping_p50_ms'], 2)} | "
                     f"{_num(r['ping_p99_ms'], 2)} | {r['pings']} | "
                     f"{_num(r['latency_p50_ms'])} | {_num(r['latency_p99_ms'])} | "
                     f"{_num(r['fps_min'], 2)} | {r['errors']} | "
                     f"{_num(r['balancer_cpu_percent'])} | "
                     f"{_num((r['load_average_before'] or [None])[0], 2)} |")
    lines += ["", "Added by the balancer (through it minus direct, per round, median of rounds):",
              "", "| balancer | ping p50 ms | ping p99 ms | ping p99 per round | "
              "speech-to-pose p50 ms | speech-to-pose p99 ms | CPU % | < 1 ms added p99 |",
              "|---|---|---|---|---|---|---|---|"]
    for kind, a in overhead["added"].items():
        lines.append(f"| {kind} | {_num(a['added_ping_p50_ms'], 3)} | "
                     f"{_num(a['added_ping_p99_ms'], 3)} | "
                     f"{', '.join(f'{v:.3f}' for v in a['added_ping_p99_ms_per_round'])} | "
                     f"{_num(a['added_latency_p50_ms'], 1)} | "
                     f"{_num(a['added_latency_p99_ms'], 1)} | "
                     f"{_num(a['balancer_cpu_percent_median'])} | {_added_verdict(a)} |")
    lines += ["", "The goal is judged on the ping round trip: the same connection path as "
              "the frames, without the model's pacing. It is *not resolved* when the direct "
              "path's own ping p99 moves between rounds by the goal or more: on a loaded "
              "machine the p99 is a few scheduler hiccups, and a difference below that spread "
              "is noise, not a pass. The p50 difference is resolved far better. "
              "Speech-to-pose differences subtract two measurements of ~150 ms whose noise is "
              "larger still; they show only that nothing large was added.", ""]
    for servers, rows in result["runs"].items():
        lines += [f"## {servers} server process(es) behind HAProxy", "",
                  "| clients | errors | fps min | p50 ms | p99 ms | servers CPU % | load gen "
                  "CPU % | load avg (1 min) | held (goal) | keeps up |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(
                f"| {r['clients']} | {r['errors']} | {_num(r['fps_min'], 2)} | "
                f"{_num(r['latency_p50_ms'])} | {_num(r['latency_p99_ms'])} | "
                f"{r['server_cpu_percent']:.0f} | {r['load_generator_cpu_percent']:.0f} | "
                f"{_num((r['load_average_before'] or [None])[0], 2)} | "
                f"{'yes' if r['held_in_real_time'] else 'no'} | "
                f"{'yes' if r['keeps_up'] else 'no'} |")
        lines.append("")
    one, two = result["summary"]["1"], result["summary"]["2"]
    ratio = two["keeps_up"] / one["keeps_up"] if one["keeps_up"] else None
    lines += ["## Goals", "",
              f"* >= {GOAL_SCALING}x clients with 2 processes on {machine['cpu_cores']} cores: "
              f"**{'met' if ratio is not None and ratio >= GOAL_SCALING else 'missed'}** "
              f"(kept up with: {two['keeps_up']} vs {one['keeps_up']} clients, ratio "
              f"{_num(ratio, 2)}; held to p99 <= {result['goal_p99_ms']:.0f} ms: "
              f"{two['held_in_real_time']} vs {one['held_in_real_time']}). The ladder is "
              f"{list(COUNTS)}, so the ratio is coarse; the load generator takes a share of "
              "the same cores.", ""]
    for kind, a in overhead["added"].items():
        lines.append(f"* < {GOAL_ADDED_P99_MS:g} ms added p99 through {kind}: "
                     f"**{_added_verdict(a)}** (ping round trip p99 "
                     f"{_num(a['added_ping_p99_ms'], 3)} ms more than direct, median of "
                     f"{overhead['rounds']} rounds)")
    return "\n".join(lines) + "\n"


def _per_core(summary: dict[str, Any]) -> str:
    cpu_ms = summary.get("cpu_ms_per_client_second")
    if not cpu_ms:
        return ""
    return (f"At {summary['keeps_up']} clients one process used {cpu_ms:.2f} ms of CPU per "
            f"client-second, so a core of its own would hold about "
            f"{summary['clients_per_free_core_estimate']} clients (an extrapolation, not a "
            "measurement).")


DOCS_START, DOCS_END = "<!-- fleet-results:start -->", "<!-- fleet-results:end -->"


def write_docs_passage(results: Path, docs: Path) -> None:
    """Put :func:`docs_passage` of ``results`` (a serve_fleet.json) between the markers."""
    passage = docs_passage(json.loads(results.read_text()), results.parent.name)
    head, _, rest = docs.read_text().partition(DOCS_START)
    _, _, tail = rest.partition(DOCS_END)
    docs.write_text(f"{head}{DOCS_START}\n{passage}\n{DOCS_END}{tail}")


def docs_passage(result: dict[str, Any], results_dir: str) -> str:
    """The capacity paragraph of docs/serving.md, from ``results_dir``/serve_fleet.json (a
    test keeps the docs equal to this for the committed results)."""
    machine, overhead = result["machine"], result["overhead"]
    one, two = result["summary"]["1"], result["summary"]["2"]
    load = machine["load_average"]
    added = "; ".join(
        f"{kind}: ping round trip p50 {a['added_ping_p50_ms']:+.3f} ms, p99 "
        f"{a['added_ping_p99_ms']:+.2f} ms (against the < {GOAL_ADDED_P99_MS:g} ms goal: "
        f"{_added_verdict(a)}), at {a['balancer_cpu_percent_median']:.1f} % CPU"
        for kind, a in overhead["added"].items())
    ratio = two["keeps_up"] / one["keeps_up"] if one["keeps_up"] else float("nan")
    return (
        f"Measured by `gesturert bench --serve --fleet` on the {machine['cpu_cores']}-core "
        f"development machine, {machine_state(load)} (the load generator shares the "
        f"cores too), git "
        f"{machine['git_sha'][:7]}. Through HAProxy, 1 process kept up with "
        f"{one['keeps_up']} real-time clients ({one['held_in_real_time']} within p99 <= "
        f"{result['goal_p99_ms']:.0f} ms), 2 processes with {two['keeps_up']} "
        f"({two['held_in_real_time']}): {ratio:.2f}x, on the coarse ladder "
        f"{list(COUNTS)}; the goal of >= {GOAL_SCALING}x is "
        f"{'met' if ratio >= GOAL_SCALING else 'missed'} here (a second process gains only "
        f"as much as a second core is free, and the load average was {load[0]:.1f} on "
        f"{machine['cpu_cores']} cores). {_per_core(one)} Added by the balancer with "
        f"{overhead['clients']} clients on one process (median of {overhead['rounds']} "
        f"rounds against direct): {added}. "
        f"Full tables: [serve_fleet.md](../benchmarks/results/{results_dir}/"
        "serve_fleet.md).")


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for servers, rows in result["runs"].items():
        shown = [r for r in rows if r["latency_p99_ms"] is not None]
        ax.plot([r["clients"] for r in shown], [r["latency_p99_ms"] for r in shown], "-o",
                label=f"{servers} process(es) behind HAProxy, p99")
    ax.axhline(result["goal_p99_ms"], color="grey", lw=1, ls=":",
               label=f"goal p99 ({result['goal_p99_ms']:.0f} ms)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("simulated real-time clients")
    ax.set_ylabel("speech-to-pose latency p99 (ms)")
    load = result["machine"]["load_average"]
    ax.set_title(f"fleet on {result['machine']['cpu_cores']} cores (loaded machine, load "
                 f"{load[0] if load else float('nan'):.1f})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
