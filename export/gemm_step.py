"""The one-frame streaming step as matrix products: ``generator_step.onnx``.

``generator.onnx`` (export/onnx_export.py) is the traced ``SalientPostureGenerator.step``:
correct for any chunk of ``Tc`` frames, but one frame costs ~120 small ONNX nodes (a
Slice, Reshape, Concat and Conv per cache, channel-major caches shifted frame by frame).
For ``chunk_frames == 1`` -- the real-time case -- this module writes the same function
by hand, from the trained weights, in the shape a CPU (and TensorRT) runs best:

* **Every causal conv layer is one Gemm over ``[batch, K * C_in]``.** The layer's cache
  is kept *time-major* (oldest frame first, ``C_in`` floats per frame); one Split cuts the
  whole state into each layer's tap frames (0, d, ..., (K-2)d) and the runs between, so a
  layer's Gemm input is ``Concat(tap frames, h)``. The weight ``(C_out, C_in, K)`` becomes
  ``(K * C_in, C_out)`` with tap ``k`` at rows ``k*C_in``.
* **The state** is the caches of the causal blocks in the order face encoder, body
  encoder, body decoder, face decoder (as ``generator.onnx``), each time-major. A new
  cache is the old one's pieces but frame 0, then ``h``: ``state_out`` is one Concat of
  tensors that exist anyway (no Slice per layer). The layout differs from
  ``generator.onnx``'s (channel-major), the size S does not; a state is only ever read
  by the model that wrote it (zeros at stream start in both).
* **Folded**: the feature standardisation into the input projections (when
  ``feature_clip == 0``); the face and body input projections into one Gemm; the audio
  projection (linear) into both decoders' input projections and, with the noise and the
  face features, into one Gemm with the detector's hidden layer; both pose heads and the
  root (exactly 0) into one Gemm whose columns are the output joint order. LeakyReLU
  follows its Gemm (ONNX Runtime fuses the pair).
* **The saliency hold** (``saliency_hold_frames`` h > 0): the last h raw scores follow
  the caches in the state, one Split piece each; ``saliency`` is one Max over them and
  this frame's score, and the new state drops the oldest.
* **Styles** (a generator with ``config.styles``): the ``style`` input (B,) int32 picks a
  one-hot row (a Gather from an identity table), one more block of rows of the decoders'
  input Gemm whose body-decoder columns are ``style_embedding @ W_body_dec[:E]`` (the
  embedding is added to the latent only the body decoder reads).

Inputs and outputs are the step contract (docs/architecture.md) with ``frames`` fixed
to 1: ``features`` (B, 1, F), ``noise`` (B, 1, N), ``state`` (B, S) [, ``style`` (B,)
int32 for a generator with styles] -> ``poses``
(B, 1, J, 2), ``saliency`` (B, 1), ``state_out`` (B, S); B is the dynamic ``batch`` axis.
:func:`export.gemm_step_check.step_parity` checks it against PyTorch frame by frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from export.onnx_export import BATCH_AXIS, DEFAULT_OPSET, check_onnx
from sdk.runners.base import FEATURES, NOISE, POSES, SALIENCY, STATE, STATE_OUT, STYLE
from train.models.generator import _BODY, SalientPostureGenerator
from train.models.layers import CausalConv1d, CausalConvStack

STEP_FILE = "generator_step.onnx"
STEP_INT8_FILE = "generator_step_int8.onnx"  # its int8 quantisation (export/step_bundle.py)
STATE_LAYOUT = "time-major-v1"
"""Name of the state layout this module writes (the manifest records it with the model)."""


@dataclass(frozen=True)
class CausalBlock:
    """One causal conv layer of the state, as the step graph sees it.

    offset: first float of its cache in the (B, S) state; channels: C_in; kernel: K;
    dilation: d; the cache is ``(K - 1) * d`` frames of ``channels`` floats, oldest first.
    """

    offset: int
    channels: int
    kernel: int
    dilation: int

    @property
    def context(self) -> int:
        return (self.kernel - 1) * self.dilation

    @property
    def size(self) -> int:
        return self.context * self.channels


def _f32(array: torch.Tensor | np.ndarray) -> np.ndarray:
    value = array.detach().double().numpy() if isinstance(array, torch.Tensor) else array
    return np.ascontiguousarray(value, dtype=np.float32)


def _dense(conv: torch.nn.Conv1d) -> tuple[np.ndarray, np.ndarray]:
    """A 1x1 Conv1d as float64 (C_in, C_out) weight and (C_out,) bias."""
    weight = conv.weight.detach().double().numpy()[:, :, 0].T
    bias = conv.bias.detach().double().numpy() if conv.bias is not None \
        else np.zeros(weight.shape[1])
    return weight, bias


class _Graph:
    """A tiny builder: nodes and initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint: str, value: np.ndarray) -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, outputs: int = 1,
           node_name: str = "", **attrs: Any) -> list[str]:
        names = [self.name(hint) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names,
                                           name=node_name or self.name(op_type), **attrs))
        return names

    def one(self, op_type: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        return self.op(op_type, inputs, hint, **attrs)[0]

    def gemm(self, x: str, weight: np.ndarray, bias: np.ndarray, hint: str,
             slope: float | None = None) -> str:
        """x (B, C_in) @ weight (C_in, C_out) + bias, then LeakyReLU(slope) if given; the
        Gemm node is named ``<hint>_gemm`` (the int8 export names the layers it keeps fp32)."""
        y = self.op("Gemm", [x, self.const(hint + "_w", _f32(weight)),
                             self.const(hint + "_b", _f32(bias))], hint,
                    node_name=hint + "_gemm")[0]
        return y if slope is None else self.one("LeakyRelu", [y], hint + "_act", alpha=slope)


class _StepBuilder:
    """Writes the graph of one generator (see the module docstring).

    The whole state is cut by ONE Split into pieces: per causal layer, each tap frame of
    its cache alone (frames 0, d, ..., (K-2)d) and the runs of frames between and after
    them. A layer's Gemm input is Concat(its tap pieces, h); its new cache is every piece
    but frame 0, then h -- tensors that exist already, so ``state_out`` is one Concat of
    them and no per-layer Slice is left.
    """

    def __init__(self, generator: SalientPostureGenerator) -> None:
        self.generator = generator
        self.g = _Graph()
        self.blocks: list[CausalBlock] = []
        self.new_caches: list[str] = []
        self._pieces: list[list[tuple[int, str]]] = []  # per layer: (first frame, tensor)
        self._held_scores: list[str] = []  # the saliency hold's raw scores, oldest first
        self._plan()

    def _layers(self) -> list[CausalConv1d]:
        gen = self.generator
        stacks = [gen.face_encoder, gen.body_encoder, gen.body_decoder, gen.face_decoder]
        return [cast(CausalConv1d, b) for s in stacks if s is not None for b in s.blocks]

    def _plan(self) -> None:
        """The state layout, and the Split that cuts the state into every layer's pieces."""
        sizes: list[int] = []
        frames: list[list[int]] = []
        offset = 0
        for layer in self._layers():
            conv = layer.conv
            block = CausalBlock(offset, int(layer.in_channels), int(conv.kernel_size[0]),
                                int(conv.dilation[0]))
            self.blocks.append(block)
            offset += block.size
            taps = list(range(0, block.context, block.dilation))  # cache frames read
            bounds = sorted({*taps, *(t + 1 for t in taps), block.context} - {0})
            starts = [0, *bounds[:-1]] if block.context else []
            frames.append(starts)
            sizes += [(end - start) * block.channels for start, end in zip(starts, bounds,
                                                                              strict=True)]
        self._layer = 0
        hold = self.generator.config.saliency_hold_frames
        sizes += [1] * hold  # the held raw scores, one piece each
        if not sizes:
            return
        names = self.g.op("Split", [STATE, self.g.const("state_split", np.array(sizes,
                                                                                 np.int64))],
                          "cache", outputs=len(sizes), axis=1)
        it = iter(names)
        self._pieces = [[(start, next(it)) for start in starts] for starts in frames]
        self._held_scores = list(it)  # (B, 1) each, oldest first

    def _causal(self, h: str, stack: CausalConvStack, hint: str) -> str:
        """The residual blocks of ``stack`` on h (B, hidden); caches from the state."""
        g, slope = self.g, float(stack.act.negative_slope)
        for index, module in enumerate(stack.blocks):
            layer = cast(CausalConv1d, module)
            block = self.blocks[self._layer]
            pieces = self._pieces[self._layer] if block.context else []
            self._layer += 1
            name = f"{hint}{index}"
            conv = layer.conv
            weight = conv.weight.detach().double().numpy()  # (C_out, C_in, K)
            dense = weight.transpose(2, 1, 0).reshape(block.kernel * block.channels, -1)
            bias = conv.bias.detach().double().numpy() if conv.bias is not None \
                else np.zeros(weight.shape[0])
            taps = [t for start, t in pieces if start % block.dilation == 0]
            joined = g.one("Concat", [*taps, h], name + "_taps", axis=1) if taps else h
            self.new_caches += [t for start, t in pieces if start != 0]
            if block.context:
                self.new_caches.append(h)
            y = g.gemm(joined, dense, bias, name, slope)
            h = g.one("Add", [h, y], name + "_res")
        return h

    def build(self) -> onnx.ModelProto:
        gen, g = self.generator, self.g
        cfg = gen.config
        mean = gen.feature_mean.detach().double().numpy()
        std = gen.feature_std.detach().double().numpy()
        x = g.one("Flatten", [FEATURES], "x", axis=1)  # (B, F)
        # ---- input projections of both encoders, standardisation folded ----
        encoders = [s for s in (gen.face_encoder, gen.body_encoder) if s is not None]
        w_in = np.concatenate([_dense(s.input_proj)[0] for s in encoders], axis=1)
        b_in = np.concatenate([_dense(s.input_proj)[1] for s in encoders])
        clip = float(cfg.feature_clip)
        if clip > 0:  # c * tanh((x - mean) / (std c)): the Tanh stays, c moves into W
            scale = g.const("in_scale", _f32(1.0 / (std * clip)))
            shift = g.const("in_shift", _f32(-mean / (std * clip)))
            x = g.one("Tanh", [g.one("Add", [g.one("Mul", [x, scale], "xs"), shift], "xn")],
                      "xc")
            w_in = w_in * clip
        else:  # ((x - mean) / std) @ W + b == x @ (W / std) + (b - (mean / std) @ W)
            b_in = b_in - (mean / std) @ w_in
            w_in = w_in / std[:, None]
        slope = float(gen.body_encoder.act.negative_slope)
        h_in = g.gemm(x, w_in, b_in, "in_proj", slope)
        face_feat = None
        if gen.face_encoder is not None:
            hf, hb = g.op("Split", [h_in, g.const("split", np.array(
                [cfg.face_hidden, cfg.body_hidden], np.int64))], "in_split", outputs=2, axis=1)
            face_feat = self._causal(hf, gen.face_encoder, "face_enc")
        else:
            hb = h_in
        body_feat = self._causal(hb, gen.body_encoder, "body_enc")
        # ---- audio projection folded into the decoders' input projections + detector ----
        w_audio, b_audio = _dense(gen.audio_proj)  # (Hb, E), (E,)
        e, n = cfg.embedding_dim, cfg.noise_dim
        w_det, b_det = _dense(cast(torch.nn.Conv1d, gen.detector[0]))  # (Hb, Dh)
        w_bd, b_bd = _dense(gen.body_decoder.input_proj)  # (E + N, Hd)
        parts_in = [body_feat, g.one("Flatten", [NOISE], "noise", axis=1)]
        hd = cfg.decoder_hidden
        widths = [hd]
        # rows: body_feat (Hb), noise (N), face_feat (Hf), style one-hot (n_styles);
        # columns: body dec, [face dec], det
        face_rows = cfg.face_hidden if face_feat is not None else 0
        n_styles = len(cfg.styles) if gen.style_embedding is not None else 0
        rows = cfg.body_hidden + n + face_rows + n_styles
        columns: list[np.ndarray] = []
        biases: list[np.ndarray] = []
        col = np.zeros((rows, hd))
        col[:cfg.body_hidden] = w_audio @ w_bd[:e]
        col[cfg.body_hidden:cfg.body_hidden + n] = w_bd[e:]
        if gen.style_embedding is not None:
            table = gen.style_embedding.weight.detach().double().numpy()  # (n_styles, E)
            col[rows - n_styles:] = table @ w_bd[:e]
        columns.append(col)
        biases.append(b_audio @ w_bd[:e] + b_bd)
        if face_feat is not None and gen.face_decoder is not None:
            parts_in.append(face_feat)
            w_fd, b_fd = _dense(gen.face_decoder.input_proj)  # (E + Hf, Hd)
            col = np.zeros((rows, hd))
            col[:cfg.body_hidden] = w_audio @ w_fd[:e]
            col[cfg.body_hidden + n:cfg.body_hidden + n + face_rows] = w_fd[e:]
            columns.append(col)
            biases.append(b_audio @ w_fd[:e] + b_fd)
            widths.append(hd)
        col = np.zeros((rows, w_det.shape[1]))
        col[:cfg.body_hidden] = w_det
        columns.append(col)
        biases.append(b_det)
        widths.append(w_det.shape[1])
        if n_styles:
            parts_in.append(g.one("Gather", [g.const("style_onehot", np.eye(
                n_styles, dtype=np.float32)), STYLE], "style_1hot", axis=0))  # (B, n_styles)
        dec_in = g.gemm(g.one("Concat", parts_in, "dec_in", axis=1),
                        np.concatenate(columns, axis=1), np.concatenate(biases), "dec_proj",
                        float(gen.body_decoder.act.negative_slope))
        split = g.op("Split", [dec_in, g.const("split", np.array(widths, np.int64))],
                     "dec_split", outputs=len(widths), axis=1)
        # ---- saliency ----
        w_d2, b_d2 = _dense(cast(torch.nn.Conv1d, gen.detector[2]))
        logit = g.gemm(split[-1], w_d2, b_d2, "det_out")  # (B, 1)
        saliency = g.one("Sigmoid", [logit], "sal")
        if self._held_scores:  # one Max over the held raw scores and this frame's
            g.nodes.append(helper.make_node("Max", [*self._held_scores, saliency], [SALIENCY],
                                            name="saliency"))
        else:
            g.nodes.append(helper.make_node("Identity", [saliency], [SALIENCY], name="saliency"))
        # ---- decoders and one head Gemm in output joint order ----
        body_h = self._causal(split[0], gen.body_decoder, "body_dec")
        w_bh, b_bh = _dense(gen.body_head)  # (Hd, 2 * body joints)
        joints2 = 2 * cfg.num_joints
        heads_in = [body_h]
        w_heads = np.zeros((hd * (len(widths) - 1), joints2))
        b_heads = np.zeros(joints2)
        if face_feat is not None and gen.face_decoder is not None \
                and gen.face_head is not None:
            face_h = self._causal(split[1], gen.face_decoder, "face_dec")
            heads_in.append(face_h)
            w_fh, b_fh = _dense(gen.face_head)
            n_body = 2 * len(_BODY)
            n_face = w_fh.shape[1]
            # output columns: root (2, zero), body[:n_body], face, body[n_body:]
            w_heads[:hd, 2:2 + n_body] = w_bh[:, :n_body]
            b_heads[2:2 + n_body] = b_bh[:n_body]
            w_heads[hd:, 2 + n_body:2 + n_body + n_face] = w_fh
            b_heads[2 + n_body:2 + n_body + n_face] = b_fh
            w_heads[:hd, 2 + n_body + n_face:] = w_bh[:, n_body:]
            b_heads[2 + n_body + n_face:] = b_bh[n_body:]
        else:
            w_heads[:, 2:] = w_bh
            b_heads[2:] = b_bh
        heads = heads_in[0] if len(heads_in) == 1 else g.one("Concat", heads_in, "heads_in",
                                                             axis=1)
        flat = g.gemm(heads, w_heads, b_heads, "heads")
        g.nodes.append(helper.make_node(
            "Reshape", [flat, g.const("pose_shape", np.array([0, 1, cfg.num_joints, 2],
                                                             np.int64))], [POSES], name="poses"))
        # ---- the new state: every cache shifted by one frame, in state order ----
        if self._held_scores:  # then the held raw scores, shifted by one frame
            self.new_caches += [*self._held_scores[1:], saliency]
        covered = sum(b.size for b in self.blocks) + len(self._held_scores)
        if covered != gen.state_size:
            raise RuntimeError(f"step graph covers {covered} state floats, the generator has "
                               f"{gen.state_size}")
        if self.new_caches:
            g.nodes.append(helper.make_node("Concat", self.new_caches, [STATE_OUT],
                                            name="state_out", axis=1))
        else:
            g.nodes.append(helper.make_node("Identity", [STATE], [STATE_OUT], name="state_out"))
        return self._model()

    def _model(self) -> onnx.ModelProto:
        cfg, s = self.generator.config, self.generator.state_size
        b = BATCH_AXIS

        def value(name: str, shape: list[int | str]) -> onnx.ValueInfoProto:
            return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

        graph = helper.make_graph(
            self.g.nodes, "generator_step",
            [value(FEATURES, [b, 1, cfg.feature_dim]), value(NOISE, [b, 1, cfg.noise_dim]),
             value(STATE, [b, s])]
            + ([helper.make_tensor_value_info(STYLE, TensorProto.INT32, [b])]
               if self.generator.style_embedding is not None else []),
            [value(POSES, [b, 1, cfg.num_joints, 2]), value(SALIENCY, [b, 1]),
             value(STATE_OUT, [b, s])],
            self.g.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", DEFAULT_OPSET)],
                                  producer_name="gesturert.export.gemm_step")
        model.ir_version = 8  # ONNX Runtime >= 1.14 and TensorRT 10 read IR 8
        return model


def build_step_model(generator: SalientPostureGenerator) -> tuple[onnx.ModelProto,
                                                                   list[CausalBlock]]:
    """The one-frame step graph of ``generator`` (eval weights) and its state layout."""
    builder = _StepBuilder(generator.eval())
    with torch.no_grad():
        model = builder.build()
    return model, builder.blocks


def export_step(generator: SalientPostureGenerator, path: str | Path) -> list[CausalBlock]:
    """Write ``generator_step.onnx`` to ``path`` (onnx.checker with full shape inference)."""
    model, blocks = build_step_model(generator)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    check_onnx(path)
    return blocks
