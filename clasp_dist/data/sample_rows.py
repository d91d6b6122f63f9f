"""Decoding and validating one shard sample; shared by the Ray Data source and the Ray-free reader.

:class:`SampleDecoder` takes a raw sample dict from :func:`~clasp_dist.data.tar_reader.iter_tar_samples`
(``__key__``, ``__url__``, one bytes value per member suffix and, for problems found while reading
the tar, ``__problem__``) and returns a typed row. Nothing is ever unpickled and nothing is
allocated before it is bounded: ``.npy`` headers are parsed first (float dtype, ``[T, D]`` shape,
data size equal to what the header says), ``T`` is compared with the step count the video's
duration gives on the manifest's grid (tolerance ``max(step_tolerance, step_tolerance_fraction *
steps)``, defaults 8 steps / 10 %), and only then is the array viewed and cast to float16; the
finiteness check runs after the cast.

Every ``meta.json`` field is checked against the shard format (docs/data.md#format) without coercion: ``video_id`` equals the tar
key and is a safe id (:func:`~clasp_dist.data.format.unsafe_id_reason`, the writer's rule),
``duration`` and ``fps`` finite numbers > 0, ``fps``/``feat_stride``/``window`` equal to the
manifest's grid, ``labels`` sorted distinct integer class ids, ``segments`` (evaluation only)
``[start, end, class]`` with ``0 <= start <= end``.

A bad sample either raises :class:`BadSampleError` naming shard, sample and field
(``bad_sample_policy=error``) or becomes a row whose ``error`` column holds that same message
(``skip``); consumers drop such rows and count them in a :class:`SkipStats`. Any exception raised
while decoding a sample becomes a ``BadSampleError``. A length difference between the streams
within ``length_tolerance`` is truncated to the shorter stream and reported in ``truncated_steps``.
"""

from __future__ import annotations

import io
import json
import logging
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config.schema import DataConfig
from .errors import BadSampleError, TooManySkippedError, short_repr
from .format import MEMBERS, is_finite_number, is_int, unsafe_id_reason
from .grid import Grid
from .tar_reader import iter_tar_samples

log = logging.getLogger(__name__)

ROW_COLUMNS = (
    "video_id",
    "visual",
    "audio",
    "labels",
    "duration",
    "num_steps",
    "fps",
    "feat_stride",
    "window",
    "error",
    "truncated_steps",
    "extra_members",
)
DEFAULT_MAX_MEMBER_BYTES = int(DataConfig.max_member_mb * 2**20)
"""64 MiB per ``.npy``: a 1-hour video at 2048-d float16 is 46 MiB; UnAV-100's longest (60 s) is 0.8 MiB."""
DEFAULT_STEP_TOLERANCE = DataConfig.step_count_tolerance
DEFAULT_STEP_TOLERANCE_FRACTION = DataConfig.step_count_tolerance_fraction
META_FIELDS = ("video_id", "duration", "fps", "feat_stride", "window", "labels")


@dataclass(frozen=True)
class SampleDecoder:
    """Callable turning a raw WebDataset sample dict into a validated row (see module docstring)."""

    visual_dim: int
    audio_dim: int
    num_classes: int
    include_segments: bool = False
    length_tolerance: int = DataConfig.length_mismatch_tolerance
    policy: str = DataConfig.bad_sample_policy
    grid: Grid | None = None
    """The manifest's grid: each video's fps/stride/window must equal it (None: not compared)."""
    step_tolerance: int = DEFAULT_STEP_TOLERANCE
    """Steps a stream may differ from the count its duration gives on the grid (absolute part)."""
    step_tolerance_fraction: float = DEFAULT_STEP_TOLERANCE_FRACTION
    """... or this fraction of that count, whichever is larger."""
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES
    """Bound on a ``.npy`` member's size, checked from the tar header before reading it."""
    strict_members: bool = False
    """Refuse samples with members other than visual.npy/audio.npy/meta.json (default: skip and count them)."""

    def __call__(self, sample: dict) -> dict:
        shard, key = str(sample.get("__url__", "?")), str(sample.get("__key__", "?"))
        try:
            return self.decode(sample, shard, key)
        except BadSampleError as exc:
            if self.policy != "skip":
                raise
            return self.bad_row(key, str(exc))

    def rows(self, fileobj, shard: str, expected: int | None = None) -> Iterator[dict]:
        """Decoded rows of one shard stream (bad rows included under ``skip``); archive damage raises."""
        for raw in iter_tar_samples(fileobj, shard, expected, self.max_member_bytes, self.strict_members):
            yield self(raw)

    def decode(self, sample: dict, shard: str, key: str) -> dict:
        field = "key"

        def bad(name: str, reason: str) -> BadSampleError:
            return BadSampleError(reason, shard=shard, video_id=key, field=name)

        try:
            reason = unsafe_id_reason(key)
            if reason is not None:
                raise bad("key", f"unsafe video id/key ({reason}); refused by every reader (docs/data.md#format)")
            if "__problem__" in sample:
                raise bad(*sample["__problem__"])
            for missing in [m for m in MEMBERS if m not in sample]:
                raise bad(missing, "member missing")
            field = "meta.json"
            meta = self._meta(sample["meta.json"], key, bad)
            expected = self._expected_steps(meta, bad)
            field = "visual.npy"
            visual = self._features(sample["visual.npy"], self.visual_dim, "visual.npy", expected, bad)  # [Tv, Dv]
            field = "audio.npy"
            audio = self._features(sample["audio.npy"], self.audio_dim, "audio.npy", expected, bad)  # [Ta, Da]
            visual, audio, truncated = self._align(visual, audio, bad)
        except BadSampleError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever a hostile sample triggers is a bad sample, never a crash
            raise bad(field, f"cannot be decoded ({type(exc).__name__}: {str(exc)[:200]})") from None
        row = {
            "video_id": meta["video_id"],
            "visual": visual,
            "audio": audio,
            "labels": meta["labels"],
            "duration": meta["duration"],
            "num_steps": int(visual.shape[0]),
            "fps": meta["fps"],
            "feat_stride": meta["feat_stride"],
            "window": meta["window"],
            "error": "",
            "truncated_steps": truncated,
            "extra_members": int(sample.get("__extra__", 0)),
        }
        if self.include_segments:
            row["segments"] = meta["segments"]
        return row

    def bad_row(self, key: str, message: str) -> dict:
        """Placeholder row of a skipped sample (same columns, empty arrays, ``error`` set)."""
        row = {
            "video_id": key,
            "visual": np.zeros((0, self.visual_dim), np.float16),
            "audio": np.zeros((0, self.audio_dim), np.float16),
            "labels": np.zeros(0, np.int64),
            "duration": 0.0,
            "num_steps": 0,
            "fps": 0.0,
            "feat_stride": 0,
            "window": 0,
            "error": message,
            "truncated_steps": 0,
            "extra_members": 0,
        }
        if self.include_segments:
            row["segments"] = "[]"
        return row

    # ------------------------------------------------------------------------------------- parts
    def _meta(self, raw: bytes, key: str, bad) -> dict:
        """Every field of the shard format checked for type and range; nothing is coerced."""
        try:
            meta = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise bad("meta.json", f"not valid JSON ({type(exc).__name__}: {str(exc)[:200]})") from None
        if not isinstance(meta, dict):
            raise bad("meta.json", "not a JSON object")
        for name in META_FIELDS:
            if name not in meta:
                raise bad(f"meta.json:{name}", "missing")
        if meta["video_id"] != key:
            raise bad("meta.json:video_id", f"is {short_repr(meta['video_id'])} but the tar key is {key!r}")
        out = {"video_id": key, "duration": _number(meta["duration"], "meta.json:duration", bad)}
        out.update(self._grid_fields(meta, bad))
        out["labels"] = self._labels(meta["labels"], bad)
        if self.include_segments:
            out["segments"] = self._segments(meta.get("segments"), bad)
        return out

    def _grid_fields(self, meta: dict, bad) -> dict:
        out = {
            "fps": _number(meta["fps"], "meta.json:fps", bad),
            "feat_stride": _integer(meta["feat_stride"], "meta.json:feat_stride", bad),
            "window": _integer(meta["window"], "meta.json:window", bad),
        }
        if self.grid is not None:
            want = {"fps": self.grid.fps, "feat_stride": self.grid.feat_stride, "window": self.grid.window}
            for name, value in want.items():
                if abs(out[name] - value) > 1e-6 * abs(value):
                    raise bad(f"meta.json:{name}", f"is {out[name]!r} but the manifest's grid has {value!r}")
        return out

    def _labels(self, labels: Any, bad) -> np.ndarray:
        if not isinstance(labels, list) or not all(is_int(c) for c in labels):
            raise bad("meta.json:labels", f"must be a list of integer class ids, got {short_repr(labels)}")
        if any(not 0 <= c < self.num_classes for c in labels):
            raise bad("meta.json:labels", f"class id out of range [0, {self.num_classes}): {short_repr(labels)}")
        if any(a >= b for a, b in zip(labels, labels[1:])):
            raise bad(
                "meta.json:labels", f"must be sorted without repeats (docs/data.md#format), got {short_repr(labels)}"
            )
        return np.asarray(labels, dtype=np.int64).reshape(-1)  # [n]

    def _segments(self, segments: Any, bad) -> str:
        if not isinstance(segments, list):
            raise bad("meta.json:segments", "missing (evaluation samples need [[start, end, class], ...])")
        for i, seg in enumerate(segments):
            ok = (
                isinstance(seg, list)
                and len(seg) == 3
                and all(is_finite_number(t) for t in seg[:2])
                and is_int(seg[2])
                and 0 <= seg[0] <= seg[1]
            )
            if not ok:
                raise bad(
                    "meta.json:segments",
                    f"segment {i} {short_repr(seg)} is not [start, end, class id] with 0 <= start <= end",
                )
            if not 0 <= seg[2] < self.num_classes:
                raise bad(
                    "meta.json:segments",
                    f"segment {i} {short_repr(seg)}: class id out of range [0, {self.num_classes})",
                )
        return json.dumps(segments)

    def _expected_steps(self, meta: dict, bad) -> tuple[int, int]:
        """(steps the duration gives on the grid, allowed difference): the shard format's step-count rule."""
        grid = Grid(meta["fps"], meta["feat_stride"], meta["window"])
        if not math.isfinite(meta["duration"] * grid.fps):
            raise bad("meta.json:duration", f"{meta['duration']!r} s at {grid.fps!r} fps is not a finite frame count")
        steps = grid.num_steps(meta["duration"])
        return steps, max(self.step_tolerance, math.ceil(self.step_tolerance_fraction * steps))

    @staticmethod
    def _features(raw: bytes, dim: int, name: str, expected: tuple[int, int], bad) -> np.ndarray:
        """The array, checked from its header (dtype, shape, size, step count) before it is materialised."""
        dtype, shape, offset = _npy_header(raw, name, bad)
        if len(shape) != 2 or shape[1] != dim or shape[0] < 1:
            raise bad(name, f"shape {tuple(shape)} does not match [T>=1, {dim}] from the manifest")
        steps, tolerance = expected
        if abs(shape[0] - steps) > tolerance:
            raise bad(
                name,
                f"{shape[0]} steps, but the duration gives {steps} on the grid (tolerance {tolerance}: "
                "data.step_count_tolerance / data.step_count_tolerance_fraction); not decoded",
            )
        count = shape[0] * shape[1]
        if len(raw) - offset != count * dtype.itemsize:
            raise bad(
                name,
                f"unreadable .npy (header says {count * dtype.itemsize} data bytes, the member holds "
                f"{len(raw) - offset})",
            )
        array = np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(shape)  # [T, D], a view
        with np.errstate(over="ignore"):  # overflow becomes inf, refused just below
            array = array.astype(np.float16)  # [T, D], the only allocation
        if not np.isfinite(array).all():  # after the cast: 1e10 in float64 is inf in float16
            raise bad(name, f"{int((~np.isfinite(array)).sum())} NaN/Inf values (after the cast to float16)")
        return array

    def _align(self, visual: np.ndarray, audio: np.ndarray, bad):
        diff = abs(visual.shape[0] - audio.shape[0])
        if diff > self.length_tolerance:
            raise bad(
                "audio.npy",
                f"{audio.shape[0]} steps vs visual {visual.shape[0]}: lengths differ by {diff} > "
                f"tolerance {self.length_tolerance}",
            )
        steps = min(visual.shape[0], audio.shape[0])
        return visual[:steps], audio[:steps], diff


def _npy_header(raw: bytes, name: str, bad) -> tuple[np.dtype, tuple, int]:
    """(dtype, shape, data offset) from a ``.npy`` header; no pickles, no object or non-float dtypes."""
    f = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"format version {version} (1.0 and 2.0 are read)")
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
    except Exception as exc:  # noqa: BLE001 - a header malformed in any way is an unreadable member
        raise bad(name, f"unreadable .npy ({type(exc).__name__}: {str(exc)[:200]})") from None
    if dtype.hasobject:
        raise bad(name, f"unreadable .npy (dtype {dtype} holds Python objects; never unpickled)")
    if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
        raise bad(name, f"dtype {dtype} is not floating point (float16/32/64)")
    if fortran and len(shape) == 2 and min(shape) > 1:
        raise bad(name, "Fortran-ordered .npy refused (write C order)")
    return dtype, tuple(shape), f.tell()


def npy_shape(raw: bytes, name: str, bad) -> tuple:
    """The shape a ``.npy`` member's header states (checked like the decoder does; nothing allocated)."""
    return _npy_header(raw, name, bad)[1]


def _number(value: Any, field: str, bad) -> float:
    """A finite number > 0 (JSON int or float; not a bool, string, NaN or Infinity)."""
    if not is_finite_number(value) or float(value) <= 0:
        raise bad(field, f"must be a finite number > 0, got {short_repr(value)}")
    return float(value)


def _integer(value: Any, field: str, bad) -> int:
    """An integer in [1, 2^31] (not a bool, float or string)."""
    if not is_int(value) or not 1 <= value <= 1 << 31:
        raise bad(field, f"must be an integer in [1, 2^31], got {short_repr(value)}")
    return value


@dataclass
class SkipStats:
    """Counts of skipped (bad) and truncated samples seen by one consumer; thread-safe."""

    split: str = ""
    seen: int = 0
    skipped: int = 0
    truncated: int = 0
    extra_members: int = 0
    """Members other than visual.npy/audio.npy/meta.json skipped unread (WebDataset's .cls, .txt, ...)."""
    messages: list[str] = field(default_factory=list)
    max_messages: int = 20
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, error: str, truncated_steps: int = 0, extra_members: int = 0) -> None:
        with self._lock:
            self.seen += 1
            self.extra_members += extra_members
            if error:
                self.skipped += 1
                self._note(error, f"skipped {error}")
            elif truncated_steps:
                self.truncated += 1

    def add_lost(self, count: int, message: str = "") -> None:
        """Samples lost without being decoded (the tail of a truncated shard); no message: counted only."""
        with self._lock:
            self.seen += count
            self.skipped += count
            if message:
                self._note(message, f"skipped {count} samples: {message}")

    def _note(self, message: str, line: str) -> None:
        """Keep and log the first ``max_messages`` messages; after that count only (no log floods)."""
        if len(self.messages) < self.max_messages:
            self.messages.append(message)
            log.warning("data: %s", line)
            if len(self.messages) == self.max_messages:
                log.warning("data: further skipped samples of split %s are counted, not logged", self.split or "?")

    @property
    def fraction(self) -> float:
        return self.skipped / self.seen if self.seen else 0.0

    def summary(self) -> str:
        return (
            f"split {self.split or '?'}: {self.seen} samples read, {self.skipped} skipped "
            f"({100 * self.fraction:.2f}%), {self.truncated} truncated by <= tolerance steps, "
            f"{self.extra_members} extra members skipped"
        )

    def check(self, max_fraction: float) -> None:
        """Raise :class:`TooManySkippedError` once the skipped fraction exceeds ``max_fraction``."""
        if self.skipped and self.fraction > max_fraction:
            first = "; ".join(self.messages[:3])
            raise TooManySkippedError(
                f"{self.summary()} exceeds data.max_skipped_fraction={max_fraction}; first: {first}"
            )

    def merge(self, other: SkipStats) -> None:
        with self._lock:
            self.seen += other.seen
            self.skipped += other.skipped
            self.truncated += other.truncated
            self.extra_members += other.extra_members
            self.messages.extend(other.messages[: max(0, self.max_messages - len(self.messages))])

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
