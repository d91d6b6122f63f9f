"""Split names: the three splits of a dataset, which of them carry ground truth, and the spellings accepted for them."""

from __future__ import annotations

from typing import Any

SPLITS = ("train", "validation", "test")
EVAL_SPLITS = ("validation", "test")
"""Splits whose samples carry ground-truth segments (``train`` never does)."""
ALIASES = {"training": "train", "val": "validation", "testing": "test"}
"""Other spellings of the split names (ActivityNet's ``subset`` values, the usual abbreviation)."""


def split_name(subset: Any) -> str | None:
    """Our split name of a spelling ('training' -> 'train', 'Val' -> 'validation'), None when it is not one."""
    name = str(subset).strip().lower()
    return name if name in SPLITS else ALIASES.get(name)


def unknown_split(name: Any) -> str:
    """The one message for a split name that is not one of ours."""
    return f"unknown split {name!r} (allowed: {', '.join(SPLITS)})"
