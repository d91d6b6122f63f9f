"""Decoding and validating one shard sample; shared by the Ray Data source and the Ray-free reader.

:class:`SampleDecoder` takes WebDataset's raw sample dict (``__key__``, ``__url__`` and one bytes
value per member suffix) and returns a typed row. Nothing is ever unpickled: ``.npy`` members are
read with ``allow_pickle=False`` and any member other than ``visual.npy``, ``audio.npy`` and
``meta.json`` (a ``.pkl``, a ``.pt``, ...) makes the sample bad.

A bad sample (missing/unexpected member, bad JSON, truncated or object ``.npy``, NaN/Inf, dims
differing from the manifest, audio/visual lengths differing by more than the tolerance, label or
segment class out of range) either raises :class:`BadSampleError` naming shard, sample and field
(``bad_sample_policy=error``) or becomes a row whose ``error`` column holds that same message
(``skip``); consumers drop such rows and count them in a :class:`SkipStats`. A length difference
within the tolerance is truncated to the shorter stream and reported in ``truncated_steps``.
"""
from __future__ import annotations

import io
import json
import logging
import tarfile
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import numpy as np

from .errors import BadSampleError, BadShardError, TooManySkippedError
from .shards import MEMBERS

log = logging.getLogger(__name__)

ROW_COLUMNS = ("video_id", "visual", "audio", "labels", "duration", "num_steps", "fps", "feat_stride", "window",
               "error", "truncated_steps")


@dataclass(frozen=True)
class SampleDecoder:
    """Callable turning a raw WebDataset sample dict into a validated row (see module docstring)."""

    visual_dim: int
    audio_dim: int
    num_classes: int
    include_segments: bool = False
    length_tolerance: int = 1
    policy: str = "error"

    def __call__(self, sample: dict) -> dict:
        shard, key = str(sample.get("__url__", "?")), str(sample.get("__key__", "?"))
        try:
            return self.decode(sample, shard, key)
        except BadSampleError as exc:
            if self.policy != "skip":
                raise
            return self.bad_row(key, str(exc))

    def decode(self, sample: dict, shard: str, key: str) -> dict:
        def bad(field: str, reason: str) -> BadSampleError:
            return BadSampleError(reason, shard=shard, video_id=key, field=field)

        members = {k for k in sample if not k.startswith("__")}
        for extra in sorted(members - set(MEMBERS)):
            raise bad(extra, "unexpected member (only visual.npy, audio.npy, meta.json are allowed; never unpickled)")
        for missing in [m for m in MEMBERS if m not in members]:
            raise bad(missing, "member missing")
        meta = self._meta(sample["meta.json"], key, bad)
        visual = self._features(sample["visual.npy"], self.visual_dim, "visual.npy", bad)  # [Tv, Dv]
        audio = self._features(sample["audio.npy"], self.audio_dim, "audio.npy", bad)  # [Ta, Da]
        visual, audio, truncated = self._align(visual, audio, bad)
        row = {"video_id": meta["video_id"], "visual": visual, "audio": audio, "labels": meta["labels"],
               "duration": meta["duration"], "num_steps": int(visual.shape[0]), "fps": meta["fps"],
               "feat_stride": meta["feat_stride"], "window": meta["window"], "error": "",
               "truncated_steps": truncated}
        if self.include_segments:
            row["segments"] = meta["segments"]
        return row

    def bad_row(self, key: str, message: str) -> dict:
        """Placeholder row of a skipped sample (same columns, empty arrays, ``error`` set)."""
        row = {"video_id": key, "visual": np.zeros((0, self.visual_dim), np.float16),
               "audio": np.zeros((0, self.audio_dim), np.float16), "labels": np.zeros(0, np.int64),
               "duration": 0.0, "num_steps": 0, "fps": 0.0, "feat_stride": 0, "window": 0, "error": message,
               "truncated_steps": 0}
        if self.include_segments:
            row["segments"] = "[]"
        return row

    # ------------------------------------------------------------------------------------- parts
    def _meta(self, raw: bytes, key: str, bad) -> dict:
        try:
            meta = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad("meta.json", f"not valid JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise bad("meta.json", "not a JSON object")
        try:
            out = {"video_id": str(meta["video_id"]), "duration": float(meta["duration"]), "fps": float(meta["fps"]),
                   "feat_stride": int(meta["feat_stride"]), "window": int(meta["window"])}
            labels = np.asarray(meta["labels"], dtype=np.int64).reshape(-1)  # [n]
        except (KeyError, TypeError, ValueError) as exc:
            raise bad("meta.json", f"missing or malformed key ({type(exc).__name__}: {exc})") from None
        if out["video_id"] != key:
            raise bad("meta.json:video_id", f"is {out['video_id']!r} but the tar key is {key!r}")
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise bad("meta.json:labels", f"class id out of range [0, {self.num_classes}): {labels.tolist()}")
        out["labels"] = labels
        if self.include_segments:
            out["segments"] = self._segments(meta.get("segments"), bad)
        return out

    def _segments(self, segments: Any, bad) -> str:
        if not isinstance(segments, list):
            raise bad("meta.json:segments", "missing (evaluation samples need [[start, end, class], ...])")
        for seg in segments:
            ok = isinstance(seg, list) and len(seg) == 3 and isinstance(seg[2], int)
            if not ok or not 0 <= seg[2] < self.num_classes:
                raise bad("meta.json:segments", f"malformed or class out of range [0, {self.num_classes}): {seg!r}")
        return json.dumps(segments)

    @staticmethod
    def _features(raw: bytes, dim: int, name: str, bad) -> np.ndarray:
        try:
            array = np.load(io.BytesIO(raw), allow_pickle=False)
        except ValueError as exc:  # object arrays (pickles), bad headers, short data
            raise bad(name, f"unreadable .npy ({exc})") from None
        except Exception as exc:  # noqa: BLE001 - EOFError, UnpicklingError, ... all mean "not a plain array"
            raise bad(name, f"unreadable .npy ({type(exc).__name__}: {exc})") from None
        if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
            raise bad(name, f"dtype {getattr(array, 'dtype', type(array))} is not floating point")
        if array.ndim != 2 or array.shape[1] != dim or array.shape[0] < 1:
            raise bad(name, f"shape {tuple(array.shape)} does not match [T>=1, {dim}] from the manifest")
        if not np.isfinite(array).all():
            raise bad(name, f"{int((~np.isfinite(array)).sum())} NaN/Inf values")
        return array.astype(np.float16, copy=False)

    def _align(self, visual: np.ndarray, audio: np.ndarray, bad):
        diff = abs(visual.shape[0] - audio.shape[0])
        if diff > self.length_tolerance:
            raise bad("audio.npy", f"{audio.shape[0]} steps vs visual {visual.shape[0]}: lengths differ by {diff} > "
                                   f"tolerance {self.length_tolerance}")
        steps = min(visual.shape[0], audio.shape[0])
        return visual[:steps], audio[:steps], diff


def split_member_name(name: str) -> tuple[Optional[str], Optional[str]]:
    """WebDataset's rule: the key is the name up to the first dot (in the base name)."""
    head, sep, base = name.rpartition("/")
    if "." not in base:
        return None, None
    key, suffix = base.split(".", 1)
    return head + sep + key, suffix


def iter_tar_samples(fileobj, shard: str, expected: Optional[int] = None) -> Iterator[dict]:
    """Group a tar stream's members into raw samples like Ray's WebDataset reader does.

    Raises :class:`BadShardError` naming the shard on a corrupt or truncated archive. A tar cut at a
    block boundary reads as a shorter archive, so with ``expected`` (the manifest's count) the last
    sample is held back until the count proves the shard complete.
    """
    pending, yielded = None, 0
    for sample in _group_members(fileobj, shard):
        if pending is not None:
            yield pending
            yielded += 1
        pending = sample
    if pending is not None and expected is not None and yielded + 1 < expected:
        raise BadShardError(f"truncated tar: {yielded + 1} samples where the manifest lists {expected}",
                            shard=shard, video_id=pending["__key__"])
    if pending is not None:
        yield pending


def _group_members(fileobj, shard: str) -> Iterator[dict]:
    current: Optional[dict] = None
    try:
        with tarfile.open(fileobj=fileobj, mode="r|*") as stream:
            for info in stream:
                if not info.isreg():
                    continue
                key, suffix = split_member_name(info.name)
                if key is None:
                    continue
                data = stream.extractfile(info).read()
                if current is not None and key != current["__key__"]:
                    yield current
                    current = None
                if current is None:
                    current = {"__key__": key, "__url__": shard}
                current[suffix] = data
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BadShardError(f"corrupt or truncated tar ({type(exc).__name__}: {exc})", shard=shard,
                            video_id=(current or {}).get("__key__")) from None
    if current is not None:
        yield current


@dataclass
class SkipStats:
    """Counts of skipped (bad) and truncated samples seen by one consumer; thread-safe."""

    split: str = ""
    seen: int = 0
    skipped: int = 0
    truncated: int = 0
    messages: list[str] = field(default_factory=list)
    max_messages: int = 20
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, error: str, truncated_steps: int = 0) -> None:
        with self._lock:
            self.seen += 1
            if error:
                self.skipped += 1
                if len(self.messages) < self.max_messages:
                    self.messages.append(error)
                log.warning("data: skipped %s", error)
            elif truncated_steps:
                self.truncated += 1

    def add_lost(self, count: int, message: str) -> None:
        """Samples lost without being decoded (the tail of a truncated shard)."""
        with self._lock:
            self.seen += count
            self.skipped += count
            if len(self.messages) < self.max_messages:
                self.messages.append(message)
            log.warning("data: skipped %d samples: %s", count, message)

    @property
    def fraction(self) -> float:
        return self.skipped / self.seen if self.seen else 0.0

    def summary(self) -> str:
        return (f"split {self.split or '?'}: {self.seen} samples read, {self.skipped} skipped "
                f"({100 * self.fraction:.2f}%), {self.truncated} truncated by <= tolerance steps")

    def check(self, max_fraction: float) -> None:
        """Raise :class:`TooManySkippedError` once the skipped fraction exceeds ``max_fraction``."""
        if self.skipped and self.fraction > max_fraction:
            first = "; ".join(self.messages[:3])
            raise TooManySkippedError(f"{self.summary()} exceeds data.max_skipped_fraction={max_fraction}; first: {first}")

    def merge(self, other: "SkipStats") -> None:
        with self._lock:
            self.seen += other.seen
            self.skipped += other.skipped
            self.truncated += other.truncated
            self.messages.extend(other.messages[: max(0, self.max_messages - len(self.messages))])

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
