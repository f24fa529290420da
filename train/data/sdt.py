"""The SDT on-disk layout (Speech Drives Templates, Qian et al. 2021): read, write, normalise.

Assumed layout (the synthetic corpus writes exactly this; real SDT data is read as is)::

    ROOT/<speaker>/processed_137.csv
    ROOT/<speaker>/<pose_fn>            one .npz per clip

* ``processed_137.csv``: comma-separated, a header row, columns ``dataset`` (split:
  train / dev / val / ...), ``start`` and ``end`` (integer pose-frame indices of the clip
  inside its interval, ``end - start`` = T), ``interval_id``, ``pose_fn``, ``audio_fn``,
  ``video_fn``, ``speaker``. Only dataset, start, end, interval_id, pose_fn and speaker are
  read; the others must exist but are ignored (real SDT's ``audio_fn`` names an interval
  wav; the clip's audio is read from the npz). Extra columns are ignored.
* ``pose_fn`` is resolved against the speaker directory; an absolute path is used as is
  (SDT's own csv files hold absolute paths of the machine that made them).
* the npz holds ``pose``: (T, 3, 137) x pixels, y pixels, confidence in OpenPose-137 order
  (SDT: [64, 3, 137]); channel-last or time-last arrays are rejected, not guessed.
  ``audio``: 1-D waveform at 16 kHz (``FeatureConfig.sample_rate``), any float dtype,
  whose length is within one pose frame of T * sample_rate / fps (SDT cuts 68266 or
  68267 samples for 64 frames). Optional (synthetic corpora): ``saliency`` (T,) in {0, 1}
  and ``posture`` (T,) integer ids, -1 = none. Other keys (SDT's ``imgs``) are ignored.

Clip audio as written here: pose frame k covers samples [ceil(k*sr/fps), ceil((k+1)*sr/fps))
of its interval, and a clip holds exactly the samples of its frames, so consecutive clips
concatenate to the interval's audio with no drift.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sdk.features import DEFAULT_FEATURES, FeatureConfig
from sdk.normalization import PoseNormalization
from sdk.skeleton import OPENPOSE_137, UPPER_BODY_122

INDEX_NAME = "processed_137.csv"
INDEX_COLUMNS = ("dataset", "start", "end", "interval_id", "pose_fn", "audio_fn", "video_fn",
                 "speaker")
SDT_CLIP_FRAMES = 64  # pose frames per SDT clip
DEFAULT_IMAGE_SIZE = (1280, 720)  # (width, height) px of Speech2Gesture videos
STD_FLOOR = 1e-3  # canonical units: smallest std compute_normalization reports
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed member time stamp: same arrays -> same bytes

_NECK = UPPER_BODY_122.joint_names.index("neck")
_R_SHOULDER = UPPER_BODY_122.joint_names.index("right_shoulder")
_L_SHOULDER = UPPER_BODY_122.joint_names.index("left_shoulder")


@dataclass(frozen=True)
class IndexRow:
    """One row of processed_137.csv (the columns this package reads)."""

    split: str
    start: int
    end: int
    interval_id: str
    pose_fn: str
    speaker: str


@dataclass(frozen=True)
class SdtClip:
    """One clip, loaded.

    Attributes:
        speaker, split, interval_id, start, end: from the index row (frames in the interval).
        path: the npz file.
        pose_px: float32 (T, 137, 2) OpenPose pixels.
        confidence: float32 (T, 137).
        audio: float32 (N,) at 16 kHz.
        saliency: float32 (T,) or None; posture: int16 (T,) or None (-1 = none).
    """

    speaker: str
    split: str
    interval_id: str
    start: int
    end: int
    path: Path
    pose_px: np.ndarray
    confidence: np.ndarray
    audio: np.ndarray
    saliency: np.ndarray | None = None
    posture: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return int(self.pose_px.shape[0])

    def model_pixels(self) -> np.ndarray:
        """float32 (T, 122, 2): the model skeleton's joints in pixels."""
        return UPPER_BODY_122.from_openpose(self.pose_px)

    def model_confidence(self) -> np.ndarray:
        """float32 (T, 122): confidence of the model skeleton's joints."""
        return UPPER_BODY_122.from_openpose(self.confidence[..., None])[..., 0]

    def canonical(self, normalization: PoseNormalization) -> np.ndarray:
        """float32 (T, 122, 2): neck-relative, divided by ``normalization.scale_px``."""
        return normalization.pixels_to_canonical(self.model_pixels(), root=_NECK)


def clip_sample_range(start_frame: int, end_frame: int, config: FeatureConfig) -> tuple[int, int]:
    """Samples [a, b) of pose frames [start_frame, end_frame): a = ceil(start*sr/fps)."""
    sr, fps = config.sample_rate, config.fps
    return -((-start_frame * sr) // fps), -((-end_frame * sr) // fps)


def write_clip(path: Path, pose: np.ndarray, audio: np.ndarray,
               saliency: np.ndarray | None = None, posture: np.ndarray | None = None) -> None:
    """Write one clip npz (uncompressed, byte-identical for identical arrays).

    Args:
        pose: (T, 3, 137) float32 pixels + confidence.
        audio: (N,) float32 at 16 kHz.
        saliency: (T,) float32 or None; posture: (T,) int16 or None.
    """
    arrays = {"pose": np.asarray(pose, np.float32), "audio": np.asarray(audio, np.float32)}
    if saliency is not None:
        arrays["saliency"] = np.asarray(saliency, np.float32)
    if posture is not None:
        arrays["posture"] = np.asarray(posture, np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for key, value in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, value, allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIME),
                             buffer.getvalue())


def write_index(speaker_dir: Path, rows: Iterable[IndexRow]) -> Path:
    """Write ``speaker_dir/processed_137.csv``; ``audio_fn`` = ``pose_fn`` (audio is in the
    npz) and ``video_fn`` = ``interval_id`` (there is no video). Returns the csv path."""
    path = speaker_dir / INDEX_NAME
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(INDEX_COLUMNS)
        for r in rows:
            writer.writerow([r.split, r.start, r.end, r.interval_id, r.pose_fn, r.pose_fn,
                             r.interval_id, r.speaker])
    return path


def read_index(speaker_dir: Path) -> list[IndexRow]:
    """Parse ``speaker_dir/processed_137.csv``; ValueError/FileNotFoundError name the file."""
    path = Path(speaker_dir) / INDEX_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no {INDEX_NAME}; expected ROOT/<speaker>/{INDEX_NAME} (SDT layout, "
            "see train/data/sdt.py). Make a corpus with `gesturert data synth`."
        )
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in INDEX_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path}: missing columns {missing}; found {reader.fieldnames}, expected the "
                f"SDT header {','.join(INDEX_COLUMNS)}"
            )
        rows = []
        for line, rec in enumerate(reader, start=2):
            try:
                start, end = int(rec["start"]), int(rec["end"])
            except (TypeError, ValueError):
                raise ValueError(
                    f"{path}, line {line}: start/end must be integer pose-frame indices, got "
                    f"{rec['start']!r}, {rec['end']!r}"
                ) from None
            if end <= start or not rec["pose_fn"]:
                raise ValueError(f"{path}, line {line}: need end > start and a pose_fn, got "
                                 f"start={start}, end={end}, pose_fn={rec['pose_fn']!r}")
            rows.append(IndexRow(rec["dataset"], start, end, rec["interval_id"],
                                 rec["pose_fn"], rec["speaker"]))
    return rows


def load_clip(speaker_dir: Path, row: IndexRow, config: FeatureConfig = DEFAULT_FEATURES
              ) -> SdtClip:
    """Load and validate the npz of one index row (errors name the npz file)."""
    path = Path(speaker_dir) / row.pose_fn
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: clip listed in {Path(speaker_dir) / INDEX_NAME} "
            f"(pose_fn={row.pose_fn!r}) does not exist; pose_fn is resolved against the "
            "speaker directory, absolute paths are used as is"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in ("pose", "audio", "saliency", "posture") if k in data}
            keys = list(data.keys())
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable npz file ({exc})") from exc
    for key in ("pose", "audio"):
        if key not in arrays:
            raise ValueError(f"{path}: no '{key}' array (has {keys}); SDT clips need "
                             "'pose' (T, 3, 137) and 'audio' (N,) at 16 kHz")
    pose = arrays["pose"]
    n_joints = OPENPOSE_137.num_joints
    if pose.ndim != 3 or pose.shape[1:] != (3, n_joints):
        raise ValueError(f"{path}: 'pose' has shape {pose.shape}, expected (T, 3, {n_joints}) "
                         "= frames, (x, y, confidence), OpenPose joints")
    t = pose.shape[0]
    if t != row.end - row.start:
        raise ValueError(f"{path}: 'pose' has {t} frames but the index says "
                         f"end - start = {row.end - row.start}")
    if not np.all(np.isfinite(pose)):
        raise ValueError(f"{path}: 'pose' contains NaN or Inf")
    audio = arrays["audio"]
    expected = t * config.sample_rate / config.fps
    if audio.ndim != 1 or not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"{path}: 'audio' must be a 1-D float waveform, got "
                         f"{audio.dtype} {audio.shape}")
    if abs(audio.shape[0] - expected) > config.samples_per_frame:
        raise ValueError(f"{path}: 'audio' has {audio.shape[0]} samples, expected about "
                         f"{expected:.0f} for {t} frames at {config.fps} fps and "
                         f"{config.sample_rate} Hz (is it 16 kHz?)")
    if not np.all(np.isfinite(audio)):
        raise ValueError(f"{path}: 'audio' contains NaN or Inf")
    extras: dict[str, np.ndarray] = {}
    for key, dtype in (("saliency", np.float32), ("posture", np.int16)):
        if key in arrays:
            if arrays[key].shape != (t,):
                raise ValueError(f"{path}: '{key}' has shape {arrays[key].shape}, "
                                 f"expected ({t},)")
            extras[key] = arrays[key].astype(dtype)
    pose = pose.astype(np.float32)
    return SdtClip(
        speaker=row.speaker, split=row.split, interval_id=row.interval_id, start=row.start,
        end=row.end, path=path, pose_px=np.ascontiguousarray(pose[:, :2].transpose(0, 2, 1)),
        confidence=np.ascontiguousarray(pose[:, 2]), audio=audio.astype(np.float32),
        saliency=extras.get("saliency"), posture=extras.get("posture"),
    )


def list_speakers(root: Path) -> list[str]:
    """Speaker directories under ``root`` that hold a processed_137.csv, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: corpus directory does not exist")
    return sorted(p.name for p in root.iterdir() if (p / INDEX_NAME).is_file())


def load_speaker(root: Path, speaker: str, splits: Sequence[str] | None = None,
                 config: FeatureConfig = DEFAULT_FEATURES) -> list[SdtClip]:
    """All clips of ``root/speaker`` (only the given splits, if any), in index order."""
    speaker_dir = Path(root) / speaker
    return [load_clip(speaker_dir, row, config) for row in read_index(speaker_dir)
            if splits is None or row.split in splits]


def generator_splits(root: Path, val_fraction: float
                     ) -> tuple[list[SdtClip], list[SdtClip]]:
    """(training, validation) clips of every speaker under ``root`` as the generator's
    training splits them: training = split ``train``; validation = ``dev``, or the last
    ``val_fraction`` of each speaker's training clips when it has no dev split."""
    train_clips: list[SdtClip] = []
    val_clips: list[SdtClip] = []
    for speaker in list_speakers(Path(root)):
        clips = load_speaker(Path(root), speaker)
        train = [c for c in clips if c.split == "train"]
        dev = [c for c in clips if c.split == "dev"]
        if not dev and len(train) > 1:
            keep = len(train) - max(1, round(val_fraction * len(train)))
            train, dev = train[:keep], train[keep:]
        train_clips += train
        val_clips += dev
    return train_clips, val_clips


def compute_normalization(clips: Sequence[SdtClip],
                          image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE
                          ) -> PoseNormalization:
    """Pose statistics over ``clips`` (normally one speaker's training clips).

    Per speaker: anchor = mean neck pixel, scale = mean shoulder width in pixels
    (|R - L shoulder|), canonical = (pixels - neck) / scale. The result has anchor_px and
    scale_px = the mean of the speakers' anchors and scales (one speaker: exactly its
    own), and mean/std per joint and axis of all canonical coordinates; the root gets
    mean 0 and std 1; std is floored at STD_FLOOR. A joint with confidence 0 in a frame
    (OpenPose: not detected) is left out of that frame's statistics.
    """
    if not clips:
        raise ValueError("compute_normalization needs at least one clip")
    anchors, scales = [], []
    total = np.zeros((UPPER_BODY_122.num_joints, 2))
    total_sq = np.zeros_like(total)
    count = np.zeros((UPPER_BODY_122.num_joints, 1))
    for speaker in sorted({c.speaker for c in clips}):
        own = [c for c in clips if c.speaker == speaker]
        anchor, scale = _anchor_and_scale(own)
        anchors.append(anchor)
        scales.append(scale)
        px = np.concatenate([c.model_pixels() for c in own]).astype(np.float64)  # (F, 122, 2)
        seen = np.concatenate([c.model_confidence() for c in own]) > 0  # (F, 122)
        valid = (seen & seen[:, _NECK : _NECK + 1])[..., None].astype(np.float64)
        canonical = (px - px[:, _NECK : _NECK + 1]) / scale
        total += (canonical * valid).sum(axis=0)
        total_sq += (canonical**2 * valid).sum(axis=0)
        count += valid.sum(axis=0)
    n = np.maximum(count, 1.0)
    mean = total / n
    std = np.maximum(np.sqrt(np.maximum(total_sq / n - mean**2, 0.0)), STD_FLOOR)
    mean[_NECK], std[_NECK] = 0.0, 1.0
    anchor_px = np.mean(anchors, axis=0)
    return PoseNormalization(anchor_px=(float(anchor_px[0]), float(anchor_px[1])),
                             scale_px=float(np.mean(scales)), mean=mean.astype(np.float32),
                             std=std.astype(np.float32),
                             image_size=(int(image_size[0]), int(image_size[1])))


def _anchor_and_scale(clips: Sequence[SdtClip]) -> tuple[np.ndarray, float]:
    """Mean neck pixel (2,) and mean shoulder width (px) over frames where they are seen."""
    px = np.concatenate([c.model_pixels() for c in clips]).astype(np.float64)
    seen = np.concatenate([c.model_confidence() for c in clips]) > 0
    neck_ok = seen[:, _NECK]
    both = neck_ok & seen[:, _R_SHOULDER] & seen[:, _L_SHOULDER]
    if not both.any():
        raise ValueError(f"speaker {clips[0].speaker!r}: no frame has the neck and both "
                         f"shoulders detected (confidence > 0); first clip {clips[0].path}")
    widths = np.linalg.norm(px[both, _R_SHOULDER] - px[both, _L_SHOULDER], axis=1)
    return px[neck_ok, _NECK].mean(axis=0), float(widths.mean())


def speaker_scales(clips: Sequence[SdtClip]) -> dict[str, float]:
    """Per speaker, the mean shoulder width in pixels (its canonical unit)."""
    return {s: _anchor_and_scale([c for c in clips if c.speaker == s])[1]
            for s in sorted({c.speaker for c in clips})}
