"""Training faults: checkpoints survive a failed or killed write, and ``gesturert train
generator --resume`` after a SIGKILL ends where the uninterrupted run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from sdk.features import DEFAULT_FEATURES
from train import checkpoint as checkpoint_module
from train.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from train.models.generator import GeneratorConfig, SalientPostureGenerator

REPO = Path(__file__).resolve().parents[2]
TINY = GeneratorConfig(lookahead_frames=1, noise_dim=2, face_hidden=8, face_dilations=(1,),
                       body_hidden=16, body_dilations=(1, 2), embedding_dim=8, pose_hidden=16,
                       pose_dilations=(1,), decoder_hidden=16, decoder_dilations=(1,),
                       detector_hidden=4, top_k=4)
TINY_YAML = """\
model: {lookahead_frames: 1, noise_dim: 2, face_hidden: 8, face_dilations: [1],
        body_hidden: 16, body_dilations: [1, 2], embedding_dim: 8, pose_hidden: 16,
        pose_dilations: [1], decoder_hidden: 16, decoder_dilations: [1], detector_hidden: 4,
        top_k: 4}
optim: {warmup_steps: 4}
run: {steps: 120, batch_size: 4, log_every: 2, checkpoint_every: 10, eval_every: 0,
      threads: 1, seed: 3}
data: {window_frames: 16, stride_frames: 16}
"""
STEPS = 120
WEIGHT_TOLERANCE = 1e-6  # absolute, on every weight after 120 AdamW steps


def _save(path: Path, model: torch.nn.Module, step: int, extra: dict[str, Any] | None = None
          ) -> Path:
    return save_checkpoint(path, kind="generator", config={"model": TINY.to_dict()}, model=model,
                           features=DEFAULT_FEATURES, step=step, extra=extra)


def _temp_files(directory: Path, name: str) -> list[Path]:
    return sorted(directory.glob(f".{name}.*.tmp"))


def test_a_write_failing_halfway_leaves_the_previous_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = SalientPostureGenerator(TINY)
    path = _save(tmp_path / "generator.pt", model, step=1)
    before = path.read_bytes()

    def half_then_disk_full(payload: Any, handle: Any) -> None:
        handle.write(b"\x80\x02partial pickle" * 1000)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", half_then_disk_full)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    with pytest.raises(OSError, match="No space left"):
        _save(path, model, step=2)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _temp_files(tmp_path, path.name) == []  # the partial temp file is removed
    assert load_checkpoint(path).step == 1
    load_model(path, "generator")  # loads and fits the model


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "flipped-header",
                                    "one-bit-in-a-weight"])
def test_a_damaged_checkpoint_is_refused_naming_it(tmp_path: Path, damage: str) -> None:
    """What a kill during a non-atomic copy (or a bad disk) would leave."""
    torch.manual_seed(0)
    path = _save(tmp_path / "generator.pt", SalientPostureGenerator(TINY), step=4)
    data = path.read_bytes()
    damaged = {"empty": b"", "truncated": data[: len(data) // 2],
               "garbage": bytes(range(256)) * 64,
               "flipped-header": data[:64] + bytes(b ^ 0xFF for b in data[64:4096])
               + data[4096:]}
    with zipfile.ZipFile(path) as archive:  # torch.load alone loaded this one silently
        largest = max(archive.infolist(), key=lambda info: info.file_size)
    bit = bytearray(data)
    bit[largest.header_offset + 200] ^= 0x40  # inside the largest weight tensor's bytes
    damaged["one-bit-in-a-weight"] = bytes(bit)
    path.write_bytes(damaged[damage])
    refusals = r"could not be read|not a gesturert checkpoint|is corrupt: .* fails its CRC"
    with pytest.raises(CheckpointError, match=refusals) as info:
        load_model(path, "generator")
    assert str(path) in str(info.value)
    if damage == "one-bit-in-a-weight":
        assert "fails its CRC check" in str(info.value)


_WRITER = """
import sys, torch
from pathlib import Path
sys.path.insert(0, {tests!r})
from reliability.test_training_faults import TINY, _save
from train.models.generator import SalientPostureGenerator
torch.manual_seed(0)
model = SalientPostureGenerator(TINY)
path = Path({path!r})
_save(path, model, step=1)
print("saved", flush=True)
big = torch.zeros(24 * 2**20 // 4)  # 24 MiB: long enough a write to be killed inside
step = 2
while True:
    _save(path, model, step=step, extra={{"ballast": big}})
    step += 1
"""


@pytest.mark.slow
def test_sigkill_during_a_checkpoint_write_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "generator.pt"
    script = _WRITER.format(tests=str(REPO / "tests"), path=str(path))
    for _attempt in range(5):  # the kill must land inside a write; retry if it landed between
        path.unlink(missing_ok=True)
        for stale in _temp_files(tmp_path, path.name):
            stale.unlink()
        child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "saved", \
                child.stderr.read() if child.stderr else ""
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                temps = _temp_files(tmp_path, path.name)
                try:
                    if temps and temps[0].stat().st_size > 1 << 20:
                        break
                except FileNotFoundError:  # renamed into place between glob and stat
                    continue
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL
        if _temp_files(tmp_path, path.name):  # the write was cut short
            break
    else:
        pytest.fail("never managed to kill the writer inside a checkpoint write")
    partial_bytes = _temp_files(tmp_path, path.name)[0].stat().st_size
    assert partial_bytes < 24 * 2**20  # really half-written
    checkpoint = load_checkpoint(path)  # the last complete one
    assert checkpoint.step >= 1
    if checkpoint.step >= 2:
        assert checkpoint.extra["ballast"].numel() == 24 * 2**20 // 4
    model = load_model(path, "generator")
    _save(path, model, step=checkpoint.step + 1)  # the next save clears the partial file
    assert _temp_files(tmp_path, path.name) == [] and load_checkpoint(path).step > 1
    print(f"\nkilled inside a write: {partial_bytes / 2**20:.1f} of 24+ MiB written; "
          f"the checkpoint of step {checkpoint.step} loads")


def _train_command(data: Path, out: Path, config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sdk.cli", "train", "generator", "--data", str(data),
            "--out", str(out), "--config", str(config), "--device", "cpu", "--no-progress",
            *extra]


@pytest.mark.slow
def test_resume_after_sigkill_matches_the_uninterrupted_run(tmp_path: Path) -> None:
    from train.data.synth import synthesize_corpus

    synthesize_corpus(tmp_path / "corpus", speakers=1, minutes=0.5, seed=1)
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = subprocess.Popen(_train_command(tmp_path / "corpus", tmp_path / "full", config),
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killed = subprocess.Popen(_train_command(tmp_path / "corpus", tmp_path / "killed", config),
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    checkpoint = tmp_path / "killed" / "generator.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.read() if killed.stderr else ""
    at_kill = load_checkpoint(checkpoint)
    assert 0 < at_kill.step < STEPS and "final" not in at_kill.extra, at_kill.step

    resumed = subprocess.run(_train_command(tmp_path / "corpus", tmp_path / "killed", config,
                                            "--resume"),
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    _, err = full.communicate(timeout=300)
    assert full.returncode == 0, err
    want = load_checkpoint(tmp_path / "full" / "generator.pt")
    got = load_checkpoint(checkpoint)
    assert got.step == want.step == STEPS
    worst = max(float((got.model[k] - v).abs().max()) for k, v in want.model.items())
    assert worst <= WEIGHT_TOLERANCE, f"weights differ by {worst:.2e} after resuming at " \
                                      f"step {at_kill.step}"
    print(f"\nkilled at checkpoint step {at_kill.step}, resumed to {STEPS}: largest weight "
          f"difference {worst:.1e}")
    for key in ("generation", "total", "val_generation"):
        assert got.extra["final"][key] == pytest.approx(want.extra["final"][key], rel=1e-5)
