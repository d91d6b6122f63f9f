"""Shard format version 1 (docs/data.md#format): what one sample of a shard is, and how it is encoded.

A dataset root holds ``manifest.json`` (:mod:`.manifest`) and WebDataset tars ``{split}-{NNNNNN}.tar``
(written by :mod:`.writer`); each video is one sample of three members in this order:
``<id>.visual.npy`` (float16 ``[T, Dv]``), ``<id>.audio.npy`` (float16 ``[T, Da]``), ``<id>.meta.json``.
Video ids containing '.' (or '/') are **rejected** at write time (WebDataset keys end at the first dot).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import DataError
from .grid import Grid

FORMAT = "clasp-shards"
VERSION = 1
MEMBERS = ("visual.npy", "audio.npy", "meta.json")


@dataclass
class VideoSample:
    """One video as the writer takes it."""

    video_id: str
    visual: np.ndarray  # [T, Dv]
    audio: np.ndarray  # [T, Da]
    duration: float
    labels: Sequence[int]
    segments: Sequence[tuple[float, float, int]] | None = None
    """(start_s, end_s, class_id); written for evaluation splits only."""
    truncated_steps: int = 0
    """Steps the producer cut to align the streams (counted into the manifest, not written)."""


# --------------------------------------------------------------------------------------------- ids
MAX_ID_LENGTH = 200
"""Longest video id (a file name derived from it must fit the usual 255-byte limit)."""


def unsafe_id_reason(video_id: object) -> str | None:
    """Why ``video_id`` cannot be a sample key or a file name, or None when it is safe.

    The one rule of the writer and of every reader (docs/data.md#format): a non-empty string without '.'
    (WebDataset keys end at the first dot; '..' and '.' are path steps), '/' or '\\' (a path,
    absolute or not), or control characters, and at most MAX_ID_LENGTH characters long. Anything derived
    from such an id stays inside its folder.
    """
    if not isinstance(video_id, str) or not video_id:
        return "must be a non-empty string"
    if len(video_id) > MAX_ID_LENGTH:
        return f"longer than {MAX_ID_LENGTH} characters"
    bad = [ch for ch in (".", "/", "\\") if ch in video_id]
    if bad:
        return f"contains {' '.join(repr(b) for b in bad)}"
    try:  # a tar name that is not UTF-8 reads as a str with surrogates; pyarrow and JSON refuse it later
        video_id.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid UTF-8"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in video_id):
        return "contains control characters"
    return None


def check_video_id(video_id: str) -> str:
    """Reject ids WebDataset cannot key: '.' starts the member suffix, '/' makes a directory."""
    reason = unsafe_id_reason(video_id)
    if reason is not None:
        raise DataError(
            f"video id {video_id!r} cannot be a WebDataset key ({reason}); "
            "rename the video (ids with '.' are rejected, not escaped)"
        )
    return video_id


# ---------------------------------------------------------------------------------------- encoding
def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def sample_meta(sample: VideoSample, grid: Grid, include_segments: bool) -> dict:
    meta = {
        "video_id": sample.video_id,
        "duration": float(sample.duration),
        "fps": grid.fps,
        "feat_stride": grid.feat_stride,
        "window": grid.window,
        "labels": sorted({int(c) for c in sample.labels}),
    }
    if include_segments:
        meta["segments"] = [[float(s), float(e), int(c)] for s, e, c in (sample.segments or [])]
    return meta


def encode_sample(sample: VideoSample, grid: Grid, include_segments: bool) -> list[tuple[str, bytes]]:
    """The three tar members of a video, in the order of the shard format (docs/data.md#format)."""
    check_video_id(sample.video_id)
    if sample.visual.shape[0] != sample.audio.shape[0]:
        raise DataError(
            f"video {sample.video_id!r}: visual has {sample.visual.shape[0]} steps, "
            f"audio {sample.audio.shape[0]}; align them before writing"
        )
    meta = json.dumps(sample_meta(sample, grid, include_segments)).encode()
    return [
        (f"{sample.video_id}.visual.npy", npy_bytes(sample.visual.astype(np.float16, copy=False))),
        (f"{sample.video_id}.audio.npy", npy_bytes(sample.audio.astype(np.float16, copy=False))),
        (f"{sample.video_id}.meta.json", meta),
    ]


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


# ------------------------------------------------------------------------------- meta.json value checks
def is_int(value: Any) -> bool:
    """A JSON integer (not a bool, which Python counts as an int)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """A finite JSON number (int or float; not a bool, NaN or Infinity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
