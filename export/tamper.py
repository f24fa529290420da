"""The tamper corpus: deployment-level faults a validation must catch (issue 15).

Each fault edits a copy of a bundle the way a broken deployment would (a weight changed,
the MFCC front end off, the manifest's normalisation or lookahead edited, a model from
another training) and then rewrites the checksums with the project's own manifest writer,
so the copy loads like a healthy bundle: only comparing it with the golden reference can
tell. Used by tests/test_validate_golden.py and by ``python -m export.tamper BUNDLE`` (the
corpus on any bundle, results as JSON and Markdown).

    python -m export.tamper sdk/data/default_bundle --out benchmarks/results/validation
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from sdk.bundle import Manifest, load_bundle, write_bundle_manifest
from sdk.mfcc import MfccMatrices

Fault = Callable[[Path], None]


def rehash(root: Path) -> None:
    """Rewrite the manifest's checksums for the files as they are now."""
    write_bundle_manifest(root, load_bundle(root, verify=False).manifest)


def edit_weights(root: Path, edit: Callable[[str, np.ndarray], np.ndarray | None]) -> None:
    """Replace generator.onnx initializers by ``edit(name, array)`` (None: unchanged)."""
    model = onnx.load(str(root / "generator.onnx"))
    for tensor in model.graph.initializer:
        changed = edit(tensor.name, numpy_helper.to_array(tensor))
        if changed is not None:
            tensor.CopyFrom(numpy_helper.from_array(changed.astype(np.float32), tensor.name))
    onnx.save(model, str(root / "generator.onnx"))
    rehash(root)


def is_weight(name: str, array: np.ndarray) -> bool:
    """A learned tensor of the generator (not a shape constant or the feature statistics)."""
    return name.startswith("generator.") and array.dtype == np.float32 and array.size > 1 \
        and "feature_" not in name


def largest_weight(root: Path) -> str:
    model = onnx.load(str(root / "generator.onnx"))
    return max((t for t in model.graph.initializer if t.name.startswith("generator.")),
               key=lambda t: int(np.prod(t.dims))).name


def edit_matrices(root: Path, edit: Callable[[MfccMatrices], dict[str, np.ndarray]]) -> None:
    manifest = load_bundle(root).manifest
    m = MfccMatrices.load(root / manifest.mfcc_matrices, manifest.features)
    arrays = {"window": m.window, "mel": m.mel, "dct": m.dct, **edit(m)}
    MfccMatrices(m.config, provenance=m.provenance, **arrays).save(root / manifest.mfcc_matrices)
    rehash(root)


def edit_manifest(root: Path, edit: Callable[[Manifest], Manifest]) -> None:
    write_bundle_manifest(root, edit(load_bundle(root).manifest))


def _normalization(what: str) -> Callable[[Manifest], Manifest]:
    def edit(m: Manifest) -> Manifest:
        norm = m.normalization
        if what == "scale":
            norm = dataclasses.replace(norm, scale_px=norm.scale_px * 1.5)
        elif what == "anchor":
            norm = dataclasses.replace(norm, anchor_px=(norm.anchor_px[0] + 37.0,
                                                        norm.anchor_px[1]))
        else:
            norm = dataclasses.replace(norm, std=norm.std * np.float32(1.03))
        return dataclasses.replace(m, normalization=norm)
    return edit


def lookahead(delta: int) -> Callable[[Manifest], Manifest]:
    def edit(m: Manifest) -> Manifest:
        return dataclasses.replace(m, generator=dataclasses.replace(
            m.generator, lookahead_frames=m.generator.lookahead_frames + delta))
    return edit


def _swap_mel_rows(m: MfccMatrices) -> dict[str, np.ndarray]:
    mel = m.mel.copy()
    mel[[10, 11]] = mel[[11, 10]]
    return {"mel": mel}


def _negate_dct_row(m: MfccMatrices) -> dict[str, np.ndarray]:
    dct = m.dct.copy()
    dct[3] *= -1
    return {"dct": dct}


def _noise(name: str, a: np.ndarray) -> np.ndarray | None:
    rng = np.random.default_rng(zlib.crc32(name.encode()))  # the same draw every run
    return a * (1 + 0.02 * rng.standard_normal(a.shape)) if is_weight(name, a) else None


def _scale_largest(root: Path) -> None:
    largest = largest_weight(root)
    edit_weights(root, lambda n, a: a * 1.01 if n == largest else None)


# fault -> (how to make it on a bundle copy, "stage metric" the failure must name)
CORPUS: dict[str, tuple[Fault, str]] = {
    "one weight tensor x1.01": (_scale_largest, "generator keypoints_max_px"),
    "all weights +2% noise": (lambda r: edit_weights(r, _noise), "generator keypoints_max_px"),
    "saliency head zeroed": (lambda r: edit_weights(
        r, lambda n, a: np.zeros_like(a) if n.startswith("generator.detector.2.") else None),
        "generator saliency_max_abs"),
    "mel filterbank x1.03": (lambda r: edit_matrices(r, lambda m: {"mel": m.mel * 1.03}),
                             "mfcc mfcc_max_abs"),
    "two mel rows swapped": (lambda r: edit_matrices(r, _swap_mel_rows), "mfcc mfcc_max_abs"),
    "a DCT row negated": (lambda r: edit_matrices(r, _negate_dct_row), "mfcc mfcc_max_abs"),
    "normalisation scale x1.5": (lambda r: edit_manifest(r, _normalization("scale")),
                                 "generator keypoints_max_px"),
    "anchor shifted 37 px": (lambda r: edit_manifest(r, _normalization("anchor")),
                             "generator keypoints_max_px"),
    "std x1.03": (lambda r: edit_manifest(r, _normalization("std")),
                  "generator keypoints_max_px"),
    "lookahead +1": (lambda r: edit_manifest(r, lookahead(+1)), "generator keypoints_max_px"),
    "lookahead -1": (lambda r: edit_manifest(r, lookahead(-1)), "generator keypoints_max_px"),
}


STYLE_EMBEDDING = "generator.style_embedding.weight"  # (n_styles, E) in generator.onnx


def shift_other_style(root: Path) -> None:
    """Move the style embedding row of the reference's ``other_style`` by 0.1: only that
    style's frames change, so the default-style checks pass and the other style's fail."""
    manifest = load_bundle(root).manifest
    if manifest.reference is None or not manifest.reference.other_style:
        raise ValueError(f"{root}: the reference names no other style to tamper with")
    row = manifest.generator.styles.index(manifest.reference.other_style)

    def edit(name: str, a: np.ndarray) -> np.ndarray | None:
        if name != STYLE_EMBEDDING:
            return None
        shifted = a.copy()
        shifted[row] += 0.1
        return shifted

    edit_weights(root, edit)


# faults for bundles whose reference holds a second style (manifest reference.other_style);
# the fault edits generator.onnx: with step models the runtime steps through those, so
# validate names it in the step-model comparison (generator.onnx vs each step model, every
# style), without them in the other style's keypoints
STYLE_CORPUS: dict[str, tuple[Fault, str]] = {
    "a non-default style row +0.1": (shift_other_style, "generator keypoints_max_px"),
}
STYLE_FAULT_WITH_STEP_MODELS = "step-model step_keypoints_max_abs"


def run_corpus(bundle: Path, work: Path) -> list[dict[str, object]]:
    """``gesturert validate`` (a subprocess, SDK path) on the bundle and on every fault
    (:data:`STYLE_CORPUS` too when the bundle's reference holds a second style).

    Returns one record per case: fault, exit code, the stage/metric expected, the first
    failure lines and whether the expected one is among them.
    """
    manifest = load_bundle(bundle).manifest
    reference = manifest.reference
    styled = {name: (make, STYLE_FAULT_WITH_STEP_MODELS if manifest.step_models else expected)
              for name, (make, expected) in STYLE_CORPUS.items()}
    corpus = CORPUS | (styled if reference is not None and reference.other_style else {})
    cases: list[tuple[str, Fault | None, str]] = [("pristine", None, "")]
    cases += [(name, make, expected) for name, (make, expected) in corpus.items()]
    records: list[dict[str, object]] = []
    for name, make, expected in cases:
        root = work / f"case{len(records)}"
        shutil.copytree(bundle, root)
        if make is not None:
            make(root)
        done = subprocess.run([sys.executable, "-m", "sdk.cli", "validate", str(root), "--out",
                               str(root / "report")], capture_output=True, text=True,
                              timeout=900)
        lines = [line.strip() for line in done.stderr.splitlines() if "> tolerance" in line]
        records.append({"fault": name, "exit_code": done.returncode, "expected": expected,
                        "named": bool(expected) and any(line.startswith(expected)
                                                        for line in lines),
                        "failures": len(lines), "first_failures": lines[:3]})
        shutil.rmtree(root, ignore_errors=True)
    return records


def corpus_markdown(bundle: str, records: list[dict[str, object]]) -> str:
    lines = [f"# Tamper corpus on {bundle}", "",
             "| fault | exit | failed checks | expected stage named | first failure |",
             "|---|---|---|---|---|"]
    for r in records:
        first = r["first_failures"][0] if r["first_failures"] else "-"  # type: ignore[index]
        lines.append(f"| {r['fault']} | {r['exit_code']} | {r['failures']} | "
                     f"{'yes' if r['named'] else '-' if not r['expected'] else 'NO'} | "
                     f"{first} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.tamper", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--out", type=Path, required=True,
                        help="directory for tamper.json and tamper.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gesturert-tamper-") as tmp:
        records = run_corpus(args.bundle, Path(tmp))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tamper.json").write_text(json.dumps(
        {"bundle": str(args.bundle), "cases": records}, indent=1) + "\n")
    markdown = corpus_markdown(str(args.bundle), records)
    (args.out / "tamper.md").write_text(markdown)
    print(markdown)
    ok = records[0]["exit_code"] == 0 and all(r["exit_code"] == 1 and r["named"]
                                              for r in records[1:])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
