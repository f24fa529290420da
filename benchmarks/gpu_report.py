"""Report files of ``benchmarks.gpu_preprocessing``: ``gpu_preprocessing.json`` (the
result dict), ``.md`` (device peaks, MFCC and pose-imaging tables) and ``.png`` (CUDA time
per call and roofline floor vs streams per chunk size; pose imaging vs images per call).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NAME = "gpu_preprocessing"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def markdown(result: dict[str, Any]) -> str:
    """The report: device and roofline, MFCC table, pose imaging table."""
    dev, m = result["device"], result["machine"]
    lines = [f"# GPU preprocessing on {dev['name']} (sm{dev['compute_capability']})", "",
             f"- peaks from cuDeviceGetAttribute: {dev['peak_bandwidth_gb_s']:.0f} GB/s, "
             f"{dev['peak_fp32_tflops']:.1f} fp32 TFLOP/s ({dev['sm_count']} SMs at "
             f"{dev['clock_khz'] / 1e3:.0f} MHz, {dev['bus_width_bits']}-bit bus at "
             f"{dev['memory_clock_khz'] / 1e3:.0f} MHz)",
             f"- host: {m['cpu_model']}, {m['cpu_cores']} cores; git {m['git_sha']}; "
             f"{m['timestamp']}; mode {result['mode']}, {result['repeats']} timed calls/cell",
             "- floor = max(bytes / bandwidth, FLOPs / fp32 peak), counted analytically "
             "(benchmarks/gpu_roofline.py); efficiency = floor / measured p50", "",
             "## Streaming MFCC (one chunk per stream per call)", "",
             "| chunk ms | streams | CUDA p50 us | floor us | bound | efficiency | GFLOP/s | "
             "host accept p50 us | gather p50 us | torchaudio p50 us | librosa CPU p50 us | "
             "x torchaudio | x librosa |",
             "|" + "---|" * 13]
    reasons, librosa_reasons, baselines = set(), set(), set()
    for c in result["mfcc"]:
        cuda, ta, lr = c["cuda_mfcc"], c["torchaudio"], c["librosa_cpu"]
        if not ta["available"]:
            reasons.add(ta["reason"])
        else:
            baselines.add(ta.get("implementation", "torchaudio.transforms.MFCC"))
        if not lr.get("available", True):
            librosa_reasons.add(lr["reason"])
        lines.append("| " + " | ".join(_fmt(v) for v in (
            c["chunk_ms"], c["streams"], cuda["gpu"]["p50_ms"] * 1e3, cuda["floor_us"],
            cuda["bound"], cuda["efficiency"], cuda["achieved_gflops"],
            cuda["host_accept_wall"]["p50_ms"] * 1e3, c["feature_gather"]["gpu"]["p50_ms"] * 1e3,
            ta["gpu"]["p50_ms"] * 1e3 if ta["available"] else None,
            lr["wall"]["p50_ms"] * 1e3 if "wall" in lr else None, ta.get("cuda_speedup"),
            lr.get("cuda_speedup"))) + " |")
    lines += [""] + [f"torchaudio unavailable: {r}" for r in sorted(reasons)]
    lines += [f"GPU baseline in the torchaudio columns: {b}" for b in sorted(baselines)]
    lines += [f"librosa unavailable: {r}" for r in sorted(librosa_reasons)]
    lines += ["", "## Pose imaging (PoseSyncNet clips of 9 images, "
              f"{result['imaging']['height']}x{result['imaging']['width']})", "",
              "| clips | images | p50 us | floor us | bound | efficiency | GFLOP/s |",
              "|" + "---|" * 7]
    for p in result["pose_imaging"]:
        lines.append("| " + " | ".join(_fmt(v) for v in (
            p["clips"], p["frames"], p["gpu"]["p50_ms"] * 1e3, p["floor_us"], p["bound"],
            p["efficiency"], p["achieved_gflops"])) + " |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """CUDA MFCC time per call vs streams, one line per chunk size, with the floors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_mfcc, ax_pose) = plt.subplots(1, 2, figsize=(11, 4.2))
    for chunk in sorted({c["chunk_samples"] for c in result["mfcc"]}):
        cells = sorted((c for c in result["mfcc"] if c["chunk_samples"] == chunk),
                       key=lambda c: c["streams"])
        x = [c["streams"] for c in cells]
        line = ax_mfcc.plot(x, [c["cuda_mfcc"]["gpu"]["p50_ms"] * 1e3 for c in cells], "o-",
                            label=f"{cells[0]['chunk_ms']:g} ms chunks")[0]
        ax_mfcc.plot(x, [c["cuda_mfcc"]["floor_us"] for c in cells], ":",
                     color=line.get_color())
    ax_mfcc.set(xscale="log", yscale="log", xlabel="streams per call",
                ylabel="GPU time per call (us); dotted: roofline floor",
                title="CUDA streaming MFCC")
    ax_mfcc.legend(fontsize=8)
    pose = result["pose_imaging"]
    ax_pose.plot([p["frames"] for p in pose], [p["gpu"]["p50_ms"] * 1e3 for p in pose], "o-",
                 label="measured p50")
    ax_pose.plot([p["frames"] for p in pose], [p["floor_us"] for p in pose], ":",
                 label="roofline floor")
    ax_pose.set(xscale="log", yscale="log", xlabel="images per call", ylabel="us",
                title="CUDA pose imaging")
    ax_pose.legend(fontsize=8)
    fig.suptitle(result["device"]["name"])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """``gpu_preprocessing.{json,md,png}`` in ``out_dir``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{NAME}.json", out_dir / f"{NAME}.md", out_dir / f"{NAME}.png"]
    paths[0].write_text(json.dumps(result, indent=2, default=float) + "\n")
    paths[1].write_text(markdown(result))
    plot(result, paths[2])
    return paths
