"""`gesturert bench --serve`: one real sweep point, and the report's goal verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.serve import markdown, plot, sweep
from benchmarks.serve_load import RATE
from sdk.audio import load_audio
from sdk.demo import DATA_DIR, DEFAULT_BUNDLE
from sdk.streaming import StreamingGenerator


@pytest.mark.slow
def test_a_sweep_point_measures_every_frame_of_every_client() -> None:
    with StreamingGenerator(DEFAULT_BUNDLE, backend="onnxruntime-cpu") as gen:
        algorithmic_ms = gen.algorithmic_latency_seconds * 1e3
        expected = len(gen.generate(_speech(2.0), 16000))
    rows = sweep(DEFAULT_BUNDLE, 1, (3,), 2.0, 15, algorithmic_ms)
    row = rows[0]
    assert row["clients"] == 3 and row["errors"] == 0
    assert row["frames"] == 3 * expected
    # speech-to-pose cannot beat the model's own algorithmic latency
    assert algorithmic_ms < row["latency_p50_ms"] <= row["latency_p99_ms"]
    assert row["server_cpu_percent"] > 0 and row["load_average_before"] is not None


def _speech(seconds: float) -> np.ndarray:
    """What each load-generator client sends: the sample looped to ``seconds``."""
    speech = load_audio(DATA_DIR / "samples" / "speech_en.flac", RATE)
    return np.resize(speech, int(seconds * RATE))


def fake_result(held: int, keeps_up_two: int) -> dict[str, Any]:
    def row(n: int, held_: bool, keeps: bool) -> dict[str, Any]:
        return {"clients": n, "errors": 0, "fps_min": 15.0, "latency_p50_ms": 170.0,
                "latency_p99_ms": 190.0 if held_ else 400.0, "server_cpu_percent": 50.0,
                "server_cpu_ms_per_client_second": 2.0, "load_generator_cpu_percent": 30.0,
                "load_average_before": [0.1, 0.1, 0.1], "held_in_real_time": held_,
                "keeps_up": keeps}
    return {
        "machine": {"cpu_model": "test", "cpu_cores": 2, "git_sha": "x", "timestamp": "t",
                    "load_average": [0.1, 0.1, 0.1]},
        "load_average_end": [0.1, 0.1, 0.1], "niceness": 0, "bundle": "b", "fps": 15,
        "algorithmic_latency_ms": 142.7, "goal_p99_ms": 192.7, "seconds_per_point": 6,
        "runs": {"1": [row(held, True, True), row(2 * held, False, False)],
                 "2": [row(keeps_up_two, False, True)]},
        "summary": {"1": {"held_in_real_time": held, "keeps_up": held,
                          "cpu_ms_per_client_second": 4.0, "clients_per_free_core_estimate": 250},
                    "2": {"held_in_real_time": 0, "keeps_up": keeps_up_two}},
    }


def test_per_server_core_counts_the_servers_cpu_and_flags_a_saturated_machine() -> None:
    result = fake_result(128, 200)
    result["runs"]["2"] = [dict(result["runs"]["1"][0], clients=200, server_cpu_percent=100.0),
                           dict(result["runs"]["1"][1], clients=256, server_cpu_percent=150.0,
                                load_generator_cpu_percent=40.0)]
    text = markdown(result)
    assert "| 1 | 128 | 50 | 30 | 256 | 80 |" in text  # 128 / 0.5 core; next: 50 + 30 %
    assert "| 2 | 200 | 100 | 30 | 200 | 190 (saturated) |" in text
    assert "2 processes vs 1: 0.78x" in text and "machine was saturated" in text


def test_report_says_met_or_missed_from_the_measured_counts(tmp_path: Path) -> None:
    met = markdown(fake_result(256, 512))
    assert "(193 ms): **met** (held: 256 clients" in met
    assert "with 2 processes: **met** (keeping up: 512 vs 256" in met
    assert "about 250 clients: an extrapolation" in met
    missed = markdown(fake_result(128, 200))
    assert "(193 ms): **missed** (held: 128 clients" in missed
    assert "with 2 processes: **missed** (keeping up: 200 vs 128" in missed
    # per server core: 256 held on 50 % of a core = 512 clients per core; the 2-process run
    # holds nothing here, so only the 1-process row is reported
    assert "| 1 | 256 | 50 | 30 | 512 | 80 |" in met
    plot(fake_result(128, 200), tmp_path / "serve.png")
    assert (tmp_path / "serve.png").stat().st_size > 1000


@pytest.mark.parametrize("size", [0, 125, 126, 640, 65535, 65536])
def test_the_load_generator_frames_are_what_a_websocket_server_parses(size: int) -> None:
    """Its hand-made client frames (every length encoding, masked) parse as websockets'
    server side parses them; a frame with a corrupted mask is caught (payload differs)."""
    from websockets.frames import Frame, Opcode
    from websockets.streams import StreamReader

    from benchmarks.serve_load import client_frame

    payload = np.random.default_rng(size).integers(0, 256, size, np.uint8).tobytes()
    for data, same in ((client_frame(0x2, payload), True),
                       (_flip_mask_bit(client_frame(0x2, payload)), size == 0)):
        reader = StreamReader()
        reader.feed_data(data)
        parser = Frame.parse(reader.read_exact, mask=True)
        with pytest.raises(StopIteration) as done:
            next(parser)
        frame = done.value.value
        assert frame.opcode == Opcode.BINARY and frame.fin
        assert (frame.data == payload) is same


def _flip_mask_bit(frame: bytes) -> bytes:
    """``frame`` with one bit of its masking key flipped (the key is the 4 bytes before the
    payload)."""
    n = frame[1] & 0x7F
    key_at = 2 + (2 if n == 126 else 8 if n == 127 else 0)
    return frame[:key_at] + bytes([frame[key_at] ^ 1]) + frame[key_at + 1:]


def test_the_pass_benchmark_measures_both_paths_and_reports_them(tmp_path: Path) -> None:
    from benchmarks.serve_pass import _measure
    from benchmarks.serve_pass import markdown as pass_markdown
    from benchmarks.serve_pass import plot as pass_plot

    values = _measure(2, 3, 1)
    assert set(values) == {"stream", "batched_streams"}
    assert all(len(v) == 1 and v[0] > 0 for v in values.values())
    row = {"streams": 2, "load_average_before": [0.5, 0.5, 0.5], "us_per_stream_frame": values,
           "stream_median_us": values["stream"][0],
           "batched_streams_median_us": values["batched_streams"][0],
           "speedup": values["stream"][0] / values["batched_streams"][0]}
    result = {"machine": {"cpu_model": "test", "cpu_cores": 2, "git_sha": "x", "timestamp": "t",
                          "load_average": [0.5, 0.5, 0.5]},
              "ticks_per_round": 3, "rounds": 1, "tick_samples": 528, "rows": [row],
              "load_average_end": [0.5, 0.5, 0.5]}
    text = pass_markdown(result)
    assert f"| 2 | {values['stream'][0]:.1f} | {values['batched_streams'][0]:.1f} |" in text
    pass_plot(result, tmp_path / "serve_pass.png")
    assert (tmp_path / "serve_pass.png").stat().st_size > 1000


def test_the_ab_report_compares_medians_and_lists_every_run(tmp_path: Path) -> None:
    from benchmarks.serve_ab import markdown as ab_markdown
    from benchmarks.serve_ab import plot as ab_plot
    from benchmarks.serve_ab import summarise as ab_summarise

    def run(cpu: float, index: int) -> dict[str, Any]:
        return {"round": index, "errors": 0, "load_average_before": [1.0, 1.0, 1.0],
                "server_cpu_ms_per_client_second": cpu,
                "loop_thread_cpu_ms_per_client_second": cpu / 2,
                "other_threads_cpu_ms_per_client_second": cpu / 2,
                "server_cpu_us_per_frame": 1e3 * cpu / 15, "latency_p50_ms": 160.0,
                "latency_p99_ms": 180.0, "fps_min": 15.1}
    runs = {"baseline": [run(4.0, 0), run(5.0, 1), run(9.0, 2)],
            "candidate": [run(3.0, 0), run(2.0, 1), run(2.5, 2)]}
    summary = {v: ab_summarise(rows) for v, rows in runs.items()}
    assert summary["baseline"]["server_cpu_ms_per_client_second"] == 5.0  # median, not mean
    result = {"machine": {"cpu_model": "test", "cpu_cores": 2, "git_sha": "y",
                          "timestamp": "t", "load_average": [1.0, 1.0, 1.0]},
              "baseline_commit": "x" * 40, "clients": 200, "seconds": 12.0, "rounds": 3,
              "goal_p99_ms": 192.7, "runs": runs, "summary": summary,
              "candidate_over_baseline": {"server_cpu_ms_per_client_second": 0.5},
              "load_average_end": [1.0, 1.0, 1.0]}
    text = ab_markdown(result)
    assert "| server CPU ms per client-second | 5.00 | 2.50 | 0.50 |" in text
    assert text.count("| baseline | 1.00 |") == 3 and text.count("| candidate | 1.00 |") == 3
    ab_plot(result, tmp_path / "ab.png")
    assert (tmp_path / "ab.png").stat().st_size > 1000
