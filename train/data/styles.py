"""Gesture styles of a corpus: which style each speaker gestures in, and the style table.

A speaker's style is the ``"style"`` of its ``synth_speaker.json`` when there is one (the
voiced corpus, ``gesturert data synth --voices --styles N``: several voices share a style),
else the speaker directory's name (the plain synthetic corpus, SDT, OpenPose imports: each
speaker is its own style, as SDT's speakers are).

The style table is what the generator learns one embedding row per entry of and what the
bundle manifest lists: the names sorted (row i = i-th name), and a default (the style of a
stream that names none) = the style with most training windows, ties broken by name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from train.data.synth import PROFILE_NAME


def speaker_style(data_dir: Path, speaker: str) -> str:
    """The gesture style of ``data_dir/speaker`` (see the module docstring)."""
    profile = Path(data_dir) / speaker / PROFILE_NAME
    if profile.is_file():
        try:
            style = json.loads(profile.read_text()).get("style")
        except (json.JSONDecodeError, AttributeError) as exc:
            raise ValueError(f"{profile}: not a JSON object ({exc})") from exc
        if style is not None:
            if not isinstance(style, str) or not style:
                raise ValueError(f"{profile}: \"style\" must be a non-empty string, got "
                                 f"{style!r}")
            return style
    return speaker


def default_style(window_styles: Iterable[str]) -> str:
    """The style with most training windows (ties: the first name in sorted order), from
    the style of every training window. Raises ValueError when there is no window."""
    counts: dict[str, int] = {}
    for style in window_styles:
        counts[style] = counts.get(style, 0) + 1
    if not counts:
        raise ValueError("default_style: no training window, so no style")
    return min(counts, key=lambda name: (-counts[name], name))


def style_indices(speaker_styles: Mapping[str, str], names: tuple[str, ...]) -> dict[str, int]:
    """speaker -> row of its style in ``names``; a speaker whose style is not in the table
    raises ValueError naming it and the table."""
    out = {}
    for speaker, style in speaker_styles.items():
        if style not in names:
            raise ValueError(f"speaker {speaker!r} has style {style!r}, not in the style "
                             f"table {list(names)}")
        out[speaker] = names.index(style)
    return out


def resolve_style(styles: tuple[str, ...], default: str, name: str | None
                  ) -> tuple[int | None, str | None]:
    """A sequence's style as a model with style table (``styles``, ``default``) takes it.

    Returns (row, note): (None, None) for a model without styles; the row of ``name``; or,
    when ``name`` is None or not in the table (a held-out speaker whose style no training
    speaker had), the default's row and a note saying so.
    """
    if not styles:
        return None, None
    if name in styles:
        return styles.index(name), None
    return styles.index(default), (f"style {name!r} is not in the model's style table "
                                   f"{list(styles)}: default {default!r} used")
