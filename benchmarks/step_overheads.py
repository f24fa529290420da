"""What surrounds the step (issue 20, run by benchmarks/step_gemm.py): the one-stream
step through the SDK's stepper, where a StreamBatch's time goes, and soxr set-ups at 48 kHz.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.step_timing import (
    FRAME_MS,
    PACKET_MS,
    interleaved,
    iobinding_call,
    ort_session,
    step_feed,
)


def one_stream_rows(root: Path, generator: Any, features: np.ndarray, repeats: int
                    ) -> list[dict[str, Any]]:
    """One stream, one frame per call, A/B in one run: the model call alone (IO binding made
    once), the SDK's stepper (ping-pong state buffers, sdk/runners/resident_state.py) and
    the stepper as it was before them (checked ``infer``, state gathered from and scattered
    to the table every call; git 91e8f82), fp32 and int8."""
    from export.gemm_step import STEP_FILE, STEP_INT8_FILE
    from sdk.runners.base import STATE_OUT
    from sdk.runners.host_stepper import HostStateStepper
    from sdk.runners.onnxrt import OnnxRuntimeRunner

    style = generator.default_style_index if generator.config.styles else None
    feed = step_feed(1, 1, generator.state_size, generator.config.noise_dim, features, style)
    calls: dict[str, Callable[[], Any]] = {}
    steppers = []
    for precision, file in (("fp32", STEP_FILE), ("int8", STEP_INT8_FILE)):
        calls[f"model call ({precision}), IO binding made once"] = iobinding_call(
            ort_session(root / file), feed)
        stepper = HostStateStepper(OnnxRuntimeRunner(root / file, intra_op_num_threads=1,
                                                     reuse_outputs=True),
                                   generator.state_size, "onnxruntime-cpu")
        steppers.append(stepper)
        slot = stepper.allocate_slot()
        calls[f"SDK stepper ({precision}), ping-pong state"] = functools.partial(
            stepper.step, feed["features"], feed["noise"], [slot], feed.get("style"))
        plain = HostStateStepper(OnnxRuntimeRunner(root / file, intra_op_num_threads=1,
                                                   reuse_outputs=True),
                                 generator.state_size, "onnxruntime-cpu")
        steppers.append(plain)
        plain_slot = plain.allocate_slot()
        calls[f"SDK stepper before ({precision}): infer, gather, scatter"] = functools.partial(
            _plain_step, plain, feed, [plain_slot], STATE_OUT)
    times = interleaved(calls, repeats * 5, block=20)
    for stepper in steppers:
        stepper.close()
    return [{"path": name, "cpu_us_p50": t["cpu_p50_ms"] * 1e3,
             "cpu_us_p25": t["cpu_p25_ms"] * 1e3, "cpu_us_p75": t["cpu_p75_ms"] * 1e3,
             "wall_us_p50": t["p50_ms"] * 1e3, "calls": t["calls"]} for name, t in times.items()]


def anatomy_rows(step_path: Path, state_size: int, repeats: int) -> list[dict[str, Any]]:
    """Where the one-stream model call's time goes, each part as its own ONNX graph, A/B
    interleaved with the whole step (batch 1, IO binding made once): ONNX Runtime's fixed
    cost per call (one Identity of the state), the step's Gemm nodes alone (its weights,
    each on its own input: the weight traffic), its state Split + Concat alone (the state
    plumbing), and a chain of as many Add nodes as the step has nodes (the cost per node)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(step_path))
    weights = {t.name: t for t in model.graph.initializer}
    vi = helper.make_tensor_value_info

    def graph(nodes: list[Any], inputs: list[Any], outputs: list[Any],
              initializers: list[Any]) -> bytes:
        made = helper.make_model(helper.make_graph(nodes, "part", inputs, outputs,
                                                   initializers),
                                 opset_imports=model.opset_import)
        made.ir_version = model.ir_version
        return made.SerializeToString()

    parts: dict[str, bytes] = {"ORT call, one Identity node": graph(
        [helper.make_node("Identity", ["state"], ["out"])], [vi("state", 1, [1, state_size])],
        [vi("out", 1, [1, state_size])], [])}
    gemms = [n for n in model.graph.node if n.op_type == "Gemm"]
    nodes, inits, ins, outs = [], [], [], []
    for i, node in enumerate(gemms):
        w = numpy_helper.to_array(weights[node.input[1]])
        inits += [weights[name] for name in node.input[1:]]
        ins.append(vi(f"x{i}", TensorProto.FLOAT, [1, w.shape[0]]))
        outs.append(vi(f"y{i}", TensorProto.FLOAT, [1, w.shape[1]]))
        nodes.append(helper.make_node("Gemm", [f"x{i}", *node.input[1:]], [f"y{i}"]))
    parts[f"the step's {len(gemms)} Gemm nodes alone"] = graph(nodes, ins, outs, inits)
    split = next(n for n in model.graph.node if n.op_type == "Split" and n.input[0] == "state")
    pieces = [f"p{i}" for i in range(len(split.output))]
    parts[f"state Split + Concat alone ({len(pieces)} pieces)"] = graph(
        [helper.make_node("Split", ["state", split.input[1]], pieces, axis=1),
         helper.make_node("Concat", [*pieces[1:], pieces[0]], ["out"], axis=1)],
        [vi("state", 1, [1, state_size])], [vi("out", 1, [1, state_size])],
        [weights[split.input[1]]])
    count = len(model.graph.node)
    chain = [helper.make_node("Add", ["x" if i == 0 else f"a{i - 1}", "one"], [f"a{i}"])
             for i in range(count)]
    parts[f"{count} Add nodes on 128 floats"] = graph(
        [*chain, helper.make_node("Identity", [f"a{count - 1}"], ["out"])],
        [vi("x", 1, [1, 128])], [vi("out", 1, [1, 128])],
        [numpy_helper.from_array(np.ones((1, 128), np.float32), "one")])
    parts["the whole step model"] = model.SerializeToString()
    calls = {name: _bound_call(ort_session_bytes(blob)) for name, blob in parts.items()}
    times = interleaved(calls, repeats * 5, block=20)
    return [{"part": name, "cpu_us_p50": t["cpu_p50_ms"] * 1e3,
             "cpu_us_p25": t["cpu_p25_ms"] * 1e3, "cpu_us_p75": t["cpu_p75_ms"] * 1e3}
            for name, t in times.items()]


def ort_session_bytes(blob: bytes) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])


def _bound_call(session: Any) -> Callable[[], Any]:
    """Batch-1 random inputs and the outputs of one run, bound once (IO binding)."""
    rng = np.random.default_rng(3)

    def value(node: Any) -> np.ndarray:  # int inputs (the style index) get index 0
        shape = [1 if isinstance(d, str) else d for d in node.shape]
        if node.type == "tensor(int32)":
            return np.zeros(shape, np.int32)
        return rng.standard_normal(shape).astype(np.float32)

    feed = {i.name: value(i) for i in session.get_inputs()}
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed),
                       strict=True))
    binding = session.io_binding()
    for name, array in feed.items():
        binding.bind_cpu_input(name, array)
    for name, array in outputs.items():
        binding.bind_output(name, "cpu", element_type=np.float32, shape=array.shape,
                            buffer_ptr=array.ctypes.data)
    return functools.partial(_run_bound, session, binding, (feed, outputs))


def _run_bound(session: Any, binding: Any, keep: Any) -> None:  # keep: the bound arrays
    session.run_with_iobinding(binding)


def _plain_step(stepper: Any, feed: dict[str, np.ndarray], slots: list[int],
                state_out: str) -> None:
    """HostStateStepper.step before the ping-pong buffers (git 91e8f82), line for line."""
    index = np.asarray(slots, dtype=np.int64)
    if np.unique(index).size != len(slots):
        raise ValueError("same slot twice")
    for slot in index:
        stepper._slots.check_live(int(slot))
    table = stepper._table
    outputs = stepper.runner.infer({**feed, "state": table[index]})
    table[index] = outputs[state_out]


def front_end_parts(root: Path, count: int, packets: int) -> list[dict[str, Any]]:
    """Where a StreamBatch's time goes, CPU us per stream-frame (int8 step, ``count``
    streams, 20 ms packets): input checks, resampling, MFCC + feature frames, the steps
    (noise, model, pixels)."""
    from sdk.batched_features import as_stream_block
    from sdk.runners.select import BackendConfig
    from sdk.stream_batch import StreamBatch
    from sdk.streaming import GeneratorConfig, StreamingGenerator

    rng = np.random.default_rng(1)
    config = GeneratorConfig(root, BackendConfig("onnxruntime-cpu", intra_op_num_threads=1,
                                                 precision="int8"))
    rows = []
    with StreamingGenerator(config) as gen:
        for rate in (16000, 48000):
            n = rate * PACKET_MS // 1000
            audio = (0.1 * rng.standard_normal((count, n * (packets + 8)))).astype(np.float32)
            parts = dict.fromkeys(("checks", "resample", "mfcc", "steps"), 0.0)
            frames = 0
            with StreamBatch(gen, range(count), rate) as batch:
                for i in range(8 + packets):
                    t0 = time.thread_time()
                    block = as_stream_block(audio[:, i * n:(i + 1) * n], count)
                    t1 = time.thread_time()
                    resampled = batch._resampler.process(block)
                    t2 = time.thread_time()
                    feats = batch._extractor.accept(resampled)
                    t3 = time.thread_time()
                    out = batch._advance(feats)
                    t4 = time.thread_time()
                    if i >= 8:  # after the warm-up (soxr delay, MFCC window, lookahead)
                        frames += len(out)
                        for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3),
                                           strict=True):
                            parts[key] += dt
            scale = 1e6 / max(frames * count, 1)
            rows.append({"rate": rate, "streams": count, "frames": frames,
                         **{f"{k}_us": v * scale for k, v in parts.items()},
                         "total_us": sum(parts.values()) * scale})
    return rows


def resampler_rows(count: int, packets: int, rate: int = 48000) -> list[dict[str, Any]]:
    """Resamplers for ``count`` streams of 20 ms packets at ``rate`` -> the model's 16 kHz
    (soxr set-ups and, at an integer ratio, :class:`sdk.decimator.Decimator`, which the SDK
    uses there): CPU us per stream-frame (66.7 ms of audio) and the output held back after
    the packets (ms: the resampler's streaming delay, part of the end-to-end latency)."""
    import soxr

    from sdk.audio import RESAMPLE_QUALITY
    from sdk.decimator import Decimator, decimation_factor
    from sdk.features import DEFAULT_FEATURES
    from sdk.ragged_decimator import RaggedDecimator

    out_rate = DEFAULT_FEATURES.sample_rate
    n = rate * PACKET_MS // 1000
    rng = np.random.default_rng(2)
    audio = (0.1 * rng.standard_normal((count, n * packets))).astype(np.float32)
    seconds = packets * PACKET_MS / 1000
    rows = []

    def row(way: str, cpu: float, got: int) -> dict[str, Any]:
        return {"way": way, "rate": rate, "streams": count,
                "us_per_stream_frame": cpu / (count * seconds * 1000 / FRAME_MS) * 1e6,
                "held_back_ms": (seconds * out_rate - got) / out_rate * 1e3}

    ways: list[tuple[str, str, bool]] = [
        (f"soxr {RESAMPLE_QUALITY}, one multichannel stream (StreamBatch before)",
         RESAMPLE_QUALITY, True),
        (f"soxr {RESAMPLE_QUALITY}, one stream per speaker (Stream)", RESAMPLE_QUALITY, False),
        ("soxr VHQ, one multichannel stream", "VHQ", True),
        ("soxr LQ, one multichannel stream", "LQ", True)]
    for name, quality, multichannel in ways:
        channels = count if multichannel else 1
        streams = [soxr.ResampleStream(rate, out_rate, channels, dtype="float32",
                                       quality=quality) for _ in range(count // channels)]
        cpu, got = 0.0, 0
        for i in range(packets):
            block = audio[:, i * n:(i + 1) * n]
            t0 = time.thread_time()
            if multichannel:  # (n, N) in, (m, N) out, as BatchedResampler does
                got += np.ascontiguousarray(
                    streams[0].resample_chunk(np.ascontiguousarray(block.T)).T).shape[1]
            else:
                outs = [s.resample_chunk(block[b]) for b, s in enumerate(streams)]
                got += outs[0].size
            cpu += time.thread_time() - t0
        rows.append(row(name, cpu, got))
    factor = decimation_factor(rate, out_rate)
    if factor is None:
        return rows
    for name, channels in (("sdk.decimator, all streams (StreamBatch)", count),
                           ("sdk.decimator, one per speaker (Stream)", 1)):
        decimators = [Decimator(factor, channels) for _ in range(count // channels)]
        cpu, got = 0.0, 0
        for i in range(packets):
            block = audio[:, i * n:(i + 1) * n]
            t0 = time.thread_time()
            outs = [d.process(block[b * channels:(b + 1) * channels])
                    for b, d in enumerate(decimators)]
            cpu += time.thread_time() - t0
            got += outs[0].shape[1]
        rows.append(row(name, cpu, got))
    ragged = RaggedDecimator(factor)  # the live server's: each connection fed on its own
    inputs = [ragged.open() for _ in range(count)]
    cpu, got = 0.0, 0
    for i in range(packets):
        block = audio[:, i * n:(i + 1) * n]
        t0 = time.thread_time()
        for b, stream in enumerate(inputs):
            ragged.append(stream, block[b])
        made = ragged.make(inputs)
        cpu += time.thread_time() - t0
        got += made[0].size
    rows.append(row("sdk.ragged_decimator, all connections (live server)", cpu, got))
    return rows
