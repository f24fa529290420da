"""One runner interface over every backend (the shape of Polygraphy's runners).

A :class:`Runner` wraps one model on one backend:

* it is a context manager: ``with runner:`` (or ``activate()`` / ``deactivate()``) loads
  and frees the backend's session, engine and buffers;
* ``infer(feed) -> outputs`` maps input names to numpy arrays and back;
* ``get_input_metadata()`` says each input's dtype and shape (ints for fixed axes, names
  for dynamic ones); the base class checks every feed against it, once, here;
* ``last_inference_time()`` is the wall time of the latest ``infer`` in seconds;
* ``bind(inputs, outputs) -> call``: a call that runs the model on the current contents of
  caller-owned input arrays and writes into caller-owned output arrays. ONNX Runtime on the
  CPU binds them once (IO binding: no per-call binding, allocation or copy); other
  backends copy from ``infer``. For loops that reuse the same buffers (the state stepper).

**Output-buffer ownership**: the arrays ``infer`` returns belong to the runner and may be
overwritten by its next ``infer`` (the TensorRT runner returns views of its pinned host
buffers). Copy what you keep past the next call.

The generator's step contract (docs/architecture.md) adds per-stream state. A
:class:`GeneratorStepper` keeps one state row per stream (a "slot"), gathers the rows of
the streams in a step, runs the model and scatters ``state_out`` back. :class:`HostStateStepper`
does this on the host for any runner; the TensorRT backend keeps the rows on the device.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType

import numpy as np

# The generator step contract: tensor names shared by export (writes) and sdk (reads).
FEATURES = "features"  # float32 (B, Tc, feature_dim)
NOISE = "noise"  # float32 (B, Tc, noise_dim)
STATE = "state"  # float32 (B, S)
STYLE = "style"  # int32 (B,) gesture-style index per stream; only models with styles have it
POSES = "poses"  # float32 (B, Tc, J, 2), standardised
SALIENCY = "saliency"  # float32 (B, Tc)
STATE_OUT = "state_out"  # float32 (B, S)
GENERATOR_INPUTS = (FEATURES, NOISE, STATE)
GENERATOR_OUTPUTS = (POSES, SALIENCY, STATE_OUT)
# The PoseSyncNet contract (docs/architecture.md).
MFCC_CLIPS = "mfcc"  # float32 (B, n_mfcc, clip_mfcc_frames)
POSE_IMAGES = "pose_images"  # float32 (B, clip_frames, H, W)
AUDIO_EMB = "audio_emb"  # float32 (B, E)
POSE_EMB = "pose_emb"  # float32 (B, E)
POSESYNC_INPUTS = (MFCC_CLIPS, POSE_IMAGES)
POSESYNC_OUTPUTS = (AUDIO_EMB, POSE_EMB)


class RunnerError(RuntimeError):
    """A backend cannot be used or failed while running; names the model and the cause."""


class RunnerInputError(ValueError):
    """A feed does not match the model's inputs (names, dtype, rank or a fixed axis)."""


@dataclass(frozen=True)
class TensorMeta:
    """One model input: ``shape`` holds ints for fixed axes and names (str) for dynamic ones."""

    name: str
    dtype: np.dtype
    shape: tuple[int | str, ...]

    def describe(self) -> str:
        dims = ", ".join(str(d) for d in self.shape)
        return f"{self.name}: {self.dtype} ({dims})"


class Runner(ABC):
    """Base class of every backend runner. Subclasses implement the ``_`` methods."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._active = False
        self._last_inference_time: float | None = None
        self._input_metadata: dict[str, TensorMeta] | None = None
        self._activations = 0  # a bound call is valid for the activation that made it

    # ---- lifecycle ----
    def activate(self) -> Runner:
        """Load the backend (session, engine, buffers). Idempotent; returns self."""
        if not self._active:
            self._activate()
            self._input_metadata = self._read_input_metadata()
            self._active = True
            self._activations += 1
        return self

    def deactivate(self) -> None:
        """Free what ``activate`` loaded. Idempotent."""
        if self._active:
            self._active = False
            self._deactivate()

    @property
    def is_active(self) -> bool:
        return self._active

    def __enter__(self) -> Runner:
        return self.activate()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.deactivate()

    # ---- inference ----
    def get_input_metadata(self) -> dict[str, TensorMeta]:
        """Inputs by name, in model order."""
        return dict(self._require_active())

    def infer(
        self, feed: Mapping[str, np.ndarray], check_inputs: bool = True
    ) -> dict[str, np.ndarray]:
        """Run the model once.

        Args:
            feed: every input by name, as numpy arrays of the model's dtype.
            check_inputs: compare ``feed`` with ``get_input_metadata()`` first (names,
                dtype, rank, fixed axes). Callers that built the feed themselves from the
                metadata may skip it.
        Returns:
            every output by name. The arrays may be reused by the next call (see module doc).
        Raises:
            RunnerInputError: the feed does not match the inputs.
            RunnerError: the backend failed.
        """
        meta = self._require_active()
        if check_inputs:
            check_feed(self.name, meta, feed)
        start = time.perf_counter()
        outputs = self._infer(feed)
        self._last_inference_time = time.perf_counter() - start
        return outputs

    def bind(self, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]
             ) -> Callable[[], None]:
        """A call that runs the model on ``inputs`` and writes every output into ``outputs``.

        Args:
            inputs: every input by name: C-contiguous arrays the caller keeps and refills
                between calls (checked against ``get_input_metadata()`` here, once).
            outputs: every output by name: C-contiguous arrays of the output's dtype and of
                the shape these inputs produce (a mismatch fails at the first call).
        Returns:
            ``call()``: one run on the arrays' current contents (``last_inference_time``
            is updated). The arrays must stay alive and keep their shapes while it is used;
            after ``deactivate`` it raises :class:`RunnerError` (bind again).
        Raises:
            RunnerInputError: an input does not match, or an array is not C-contiguous.
        """
        meta = self._require_active()
        check_feed(self.name, meta, inputs)
        for name, array in (*inputs.items(), *outputs.items()):
            if not (isinstance(array, np.ndarray) and array.flags.c_contiguous
                    and array.flags.writeable):
                raise RunnerInputError(f"{self.name}: bind needs C-contiguous writable numpy "
                                       f"arrays; {name!r} is not")
        run = self._bind(dict(inputs), dict(outputs))
        activation = self._activations

        def call() -> None:
            if not self._active or self._activations != activation:
                raise RunnerError(f"{self.name}: this bound call belongs to an earlier "
                                  "activation of the runner; bind again")
            start = time.perf_counter()
            run()
            self._last_inference_time = time.perf_counter() - start
        return call

    def last_inference_time(self) -> float | None:
        """Seconds the latest ``infer`` took (host wall time, including copies); None before."""
        return self._last_inference_time

    def _require_active(self) -> dict[str, TensorMeta]:
        if not self._active or self._input_metadata is None:
            raise RunnerError(f"{self.name}: runner is not active; use `with runner:` first")
        return self._input_metadata

    # ---- backend hooks ----
    @abstractmethod
    def _activate(self) -> None: ...

    @abstractmethod
    def _deactivate(self) -> None: ...

    @abstractmethod
    def _read_input_metadata(self) -> dict[str, TensorMeta]: ...

    @abstractmethod
    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def _bind(self, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]
              ) -> Callable[[], None]:
        """Backend hook of :meth:`bind` (arguments checked). Default: ``_infer``, then copy."""
        def run() -> None:
            results = self._infer(inputs)
            for name, array in outputs.items():
                value = results[name]
                if value.shape != array.shape:
                    raise RunnerError(f"{self.name}: output {name!r} has shape {value.shape}, "
                                      f"the bound buffer {array.shape}")
                np.copyto(array, value)
        return run


def check_feed(model: str, meta: Mapping[str, TensorMeta], feed: Mapping[str, np.ndarray]) -> None:
    """Raise :class:`RunnerInputError` unless ``feed`` matches ``meta`` (names, dtype, axes)."""
    missing = [n for n in meta if n not in feed]
    extra = [n for n in feed if n not in meta]
    if missing or extra:
        raise RunnerInputError(
            f"{model}: feed names do not match the model inputs: missing {missing}, "
            f"unexpected {extra}; expected {[m.describe() for m in meta.values()]}"
        )
    for name, spec in meta.items():
        array = feed[name]
        if not isinstance(array, np.ndarray):
            raise RunnerInputError(f"{model}: input {name!r} must be a numpy array, got "
                                   f"{type(array).__name__}")
        if array.dtype != spec.dtype:
            raise RunnerInputError(
                f"{model}: input {name!r} must be {spec.dtype}, got {array.dtype}"
            )
        if array.ndim != len(spec.shape) or any(
            isinstance(d, int) and d != n for d, n in zip(spec.shape, array.shape, strict=True)
        ):
            raise RunnerInputError(
                f"{model}: input {name!r} must have shape ({', '.join(map(str, spec.shape))}), "
                f"got {array.shape}"
            )


@dataclass(frozen=True)
class StepOutputs:
    """What one generator step returns (state stays with the stepper).

    poses: float32 (B, Tc, J, 2) standardised poses of the step's output frames.
    saliency: float32 (B, Tc) salient-posture scores in [0, 1].
    Both may be views of buffers the stepper reuses on its next step.
    """

    poses: np.ndarray
    saliency: np.ndarray


class GeneratorStepper(ABC):
    """Runs the generator step contract over batches of streams, keeping their state.

    Each stream owns a slot (an int) holding its (S,) float32 state, zero when allocated
    or reset. ``step`` gathers the slots' rows into ``state`` (B, S), runs the model and
    writes ``state_out`` back to the same slots. Not thread-safe: the caller serialises.
    """

    backend: str
    state_size: int
    runner: Runner  # the model's runner (its input metadata, its last inference time)

    @property
    def max_batch(self) -> int | None:
        """Most streams one ``step`` accepts (None: no limit)."""
        return None

    @property
    def launch_bound(self) -> bool:
        """True for a step on a GPU: a call costs about as much for one stream as for
        thousands (an H200 measured the torch-CUDA step at 1.59 ms for 64 streams, 2.47 ms
        for 4096), so batching callers give it as many streams per call as it holds; False
        (a CPU step): they keep to the CPU's best batch (``sdk.stream_batch.STEP_BATCH``)."""
        return False

    @abstractmethod
    def allocate_slot(self) -> int:
        """A fresh slot whose state is all zeros."""

    @abstractmethod
    def release_slot(self, slot: int) -> None:
        """Give a slot back; it may be handed out again (zeroed)."""

    @abstractmethod
    def reset_slot(self, slot: int) -> None:
        """Zero a slot's state (the stream starts over)."""

    @abstractmethod
    def read_state(self, slot: int) -> np.ndarray:
        """A copy of a slot's state, float32 (S,)."""

    @abstractmethod
    def step(self, features: np.ndarray, noise: np.ndarray, slots: Sequence[int],
             styles: np.ndarray | None = None) -> StepOutputs:
        """One step for ``len(slots)`` streams.

        Args:
            features: float32 (B, Tc, feature_dim) raw feature frames t..t+Tc-1 per stream.
            noise: float32 (B, Tc, noise_dim), ``frame_noise(seed, t, Tc, noise_dim)`` per stream.
            slots: B distinct slots, row b of the batch belongs to ``slots[b]``.
            styles: int32 (B,) style index per stream (``GeneratorSpec.style_index``);
                required by a model with a ``style`` input; a model without one takes
                None or all zeros (its one implicit style).
        """

    @abstractmethod
    def close(self) -> None:
        """Free the backend. Idempotent."""

    @staticmethod
    def _style_feed(styled: bool, styles: np.ndarray | None, batch: int) -> dict[str, np.ndarray]:
        """The ``style`` entry of a step's feed: {STYLE: int32 (B,)} for a model with a
        style input, {} for one without (whose only style is index 0)."""
        if styles is None:
            if styled:
                raise ValueError("this generator model takes a style per stream: pass styles "
                                 "(int32 (B,), GeneratorSpec.style_index)")
            return {}
        index = np.asarray(styles, dtype=np.int32)
        if index.shape != (batch,):
            raise ValueError(f"step needs one style per batch row ({batch}), got shape "
                             f"{index.shape}")
        if not styled:
            if index.any():
                raise ValueError(f"this generator model has no styles (only index 0), got "
                                 f"{sorted(set(index.tolist()))}")
            return {}
        return {STYLE: index}

    @staticmethod
    def _check_slots(slots: Sequence[int], batch: int) -> np.ndarray:
        index = np.asarray(slots, dtype=np.int64)
        if index.shape != (batch,):
            raise ValueError(f"step needs one slot per batch row ({batch}), got {len(slots)}")
        if len(set(index.tolist())) != batch:
            raise ValueError(f"step got the same slot twice: {sorted(index.tolist())}")
        return index


class SlotAllocator:
    """Hands out small integer slots, reusing released ones (lowest first)."""

    def __init__(self) -> None:
        self._free: list[int] = []
        self._next = 0
        self._live: set[int] = set()

    @property
    def high_water(self) -> int:
        """One past the largest slot ever handed out (the table size needed)."""
        return self._next

    def allocate(self) -> int:
        if self._free:
            self._free.sort()
            slot = self._free.pop(0)
        else:
            slot = self._next
            self._next += 1
        self._live.add(slot)
        return slot

    def release(self, slot: int) -> None:
        self.check_live(slot)
        self._live.remove(slot)
        self._free.append(slot)

    def all_live(self, slots: tuple[int, ...]) -> bool:
        return self._live.issuperset(slots)

    def check_live(self, slot: int) -> None:
        if slot not in self._live:
            raise ValueError(f"slot {slot} is not allocated")
