"""Languages no model heard: issue 17's acceptance on speech in languages outside the corpus.

    python -m benchmarks.languages_never_heard [BUNDLE] [--out benchmarks/results/voices]

The corpus speaks de, en, es, fr and it (:data:`train.data.voices.VOICES`). Here espeak-ng
(an engine the models did hear) speaks six languages they never did, among them a tonal
one and three other scripts: Mandarin (pinyin through espeak-ng's ``cmn-latn-pinyin``:
its ``cmn`` dictionary spells many characters out in English), Russian, Hindi, Arabic,
Japanese (kana) and Turkish, each three sentences of a short talk (:data:`LANGUAGES`; the
same content in every language), one sequence per language, the sentences separated by
:data:`PAUSE_S` of silence. The espeak-ng variants differ from the corpus's in language,
and the rate and pitch are set per row.

Measured on the bundle alone, as :mod:`benchmarks.recorded_voice` does (its own PoseSyncNet
judges, the training range it carries; default gesture style; clean audio), by issue 17's
criteria (:func:`benchmarks.voices_acceptance.verdict`). Exit status 0 when every language
meets every criterion, else 1 (2: espeak-ng or the bundle missing).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.acceptance_report import all_met, carried_range, missed, sync_cells, write_report
from benchmarks.common import load_average, machine_info, machine_state
from benchmarks.recorded_voice import DEFAULT_BUNDLE, DEFAULT_OUT
from benchmarks.voices_acceptance import score_sequences, shown

ESPEAK = "espeak-ng"
PAUSE_S = 0.5
TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Language:
    """A row: ``code`` (ISO 639), its name, the espeak-ng voice (``language+variant``),
    words per minute, base pitch 0-99 and the sentences it speaks."""

    code: str
    name: str
    voice: str
    rate_wpm: int
    pitch: int
    sentences: tuple[str, ...]


LANGUAGES = (
    Language("cmn", "Mandarin", "cmn-latn-pinyin+f2", 160, 60, (
        "wo3 men5 jin1 tian1 tao3 lun4 yi2 ge4 fei1 chang2 zhong4 yao4 de5 wen4 ti2.",
        "da4 jia1 dou1 zhi1 dao4, zhe4 jian4 shi4 qing5 bu4 rong2 yi4.",
        "dan4 shi4 wo3 xiang1 xin4, zhi3 yao4 wo3 men5 yi4 qi3 nu3 li4, jiu4 yi2 ding4 "
        "neng2 gou4 cheng2 gong1.")),
    Language("ru", "Russian", "ru+m3", 165, 40, (
        "Сегодня мы обсуждаем очень важный вопрос.",
        "Все знают, что это непросто.",
        "Но я уверен, что вместе мы обязательно справимся.")),
    Language("hi", "Hindi", "hi+f4", 160, 65, (
        "आज हम एक बहुत महत्वपूर्ण सवाल पर बात करेंगे।",
        "सब जानते हैं कि यह आसान नहीं है।",
        "लेकिन मुझे विश्वास है कि हम मिलकर ज़रूर सफल होंगे।")),
    Language("ar", "Arabic", "ar+m1", 150, 45, (
        "نحن نناقش اليوم مسألة مهمة جدا.",
        "الجميع يعرف أن هذا ليس سهلا.",
        "لكنني أؤمن بأننا سننجح معا.")),
    Language("ja", "Japanese", "ja+f2", 170, 60, (
        "きょうは とても たいせつな もんだいに ついて はなします。",
        "みんな しっている とおり、これは かんたんでは ありません。",
        "でも、いっしょに がんばれば、かならず うまく いきます。")),
    Language("tr", "Turkish", "tr+m4", 170, 45, (
        "Bugün çok önemli bir konuyu konuşuyoruz.",
        "Herkes bunun kolay olmadığını biliyor.",
        "Ama birlikte çalışırsak mutlaka başaracağız.")),
)
"""The rows, in the report's order."""


def missing() -> str | None:
    """Why espeak-ng cannot speak here (naming how to install it), or None."""
    if shutil.which(ESPEAK) is None:
        return f"{ESPEAK} is not installed (`make voices` or apt-get install espeak-ng)"
    return None


def speak(language: Language, rate: int) -> np.ndarray:
    """``language``'s sentences as one float32 (N,) audio at ``rate`` Hz, each sentence
    rendered by ``espeak-ng -w`` on its own and followed by :data:`PAUSE_S` of silence.
    Raises RuntimeError (with espeak-ng's message) when a sentence is not rendered."""
    from sdk.audio import load_audio

    problem = missing()
    if problem:
        raise RuntimeError(problem)
    parts = []
    with tempfile.TemporaryDirectory(prefix="gesturert-languages-") as tmp:
        for i, sentence in enumerate(language.sentences):
            path = Path(tmp) / f"{i}.wav"
            done = subprocess.run(
                [ESPEAK, "-v", language.voice, "-s", str(language.rate_wpm), "-p",
                 str(language.pitch), "-w", str(path), sentence],
                capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
            if done.returncode != 0 or not path.is_file():
                raise RuntimeError(f"{ESPEAK} -v {language.voice} failed (exit "
                                   f"{done.returncode}): {done.stderr.strip()[-300:]}")
            parts += [load_audio(path, rate), np.zeros(round(PAUSE_S * rate), np.float32)]
    return np.concatenate(parts)


def trained_languages() -> set[str]:
    """The languages of the corpus's voices (:data:`train.data.voices.VOICES`)."""
    from train.data.voices import VOICES

    return {v.language for v in VOICES}


def run(bundle_dir: Path, seed: int = 0) -> dict[str, Any]:
    """One row per :data:`LANGUAGES` entry (module docstring). Raises ValueError when a row's
    language is one the corpus speaks (it would not be never heard)."""
    from sdk.streaming import StreamingGenerator

    heard = trained_languages() & {language.code for language in LANGUAGES}
    if heard:
        raise ValueError(f"the corpus speaks {sorted(heard)}: not languages never heard")
    rows = {}
    with StreamingGenerator(str(bundle_dir)) as generator:
        pose_range = carried_range(generator, bundle_dir)
        for language in LANGUAGES:
            audio = speak(language, generator.manifest.features.sample_rate)
            row = score_sequences(generator, [audio], generator.default_style, pose_range,
                                  seed)
            rows[language.code] = {"language": language.name, "voice": language.voice,
                                   **row}
    return {"rows": rows, "trained_languages": sorted(trained_languages())}


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Languages no model heard: the bundle's acceptance (issue 17)", "",
             f"Bundle `{report['bundle']}`; espeak-ng speaking languages outside the corpus "
             f"(which speaks {', '.join(report['trained_languages'])}); one sequence of three "
             "sentences per language. Judge: the bundle's own PoseSyncNet; training range: "
             "the one the bundle carries. Machine: "
             f"{report['machine']['cpu_model']}, {report['machine']['cpu_cores']} cores, "
             f"{report['load']}; {report['seconds']:.0f} s. Written by `python -m "
             "benchmarks.languages_never_heard`.", "",
             "| language | espeak-ng voice | s | PSD | mean pose PSD | ratio | offset | conf. "
             "| mouth r | mean abs z | farthest past the training range (SD) | missed |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for code, r in report["rows"].items():
        lines.append(f"| {r['language']} ({code}) | {r['voice']} | {r['seconds']:.1f} | "
                     f"{sync_cells(r)} | {', '.join(missed(r)) or '-'} |")
    lines += ["", "Every language meets every criterion." if report["all_passed"]
              else "NOT every language meets every criterion."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path, nargs="?", default=DEFAULT_BUNDLE,
                        help="bundle directory (default: the shipped default bundle)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    parser.add_argument("--seed", type=int, default=0, help="stream seed (default 0)")
    args = parser.parse_args(argv)
    started, load = time.perf_counter(), machine_state(load_average())
    try:
        report = run(args.bundle, args.seed)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"languages_never_heard: {exc}", file=sys.stderr)
        return 2
    report |= {"bundle": shown(args.bundle), "seed": args.seed,
               "all_passed": all_met(report["rows"].values()),
               "seconds": time.perf_counter() - started, "machine": machine_info(),
               "load": load}
    write_report(args.out, "languages_never_heard", report, markdown(report))
    return 0 if report["all_passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
