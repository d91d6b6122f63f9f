"""The dataset manifest (docs/data.md#format): a pydantic model of ``manifest.json``, its reading and writing, and
the shard checksums it records.

Reading checks every field's type and range first (strict: no coercion, no bool for an int, no NaN),
so that any malformed manifest is one :class:`ManifestError` naming the file and each bad field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ..limits import (
    MAX_CLASSES,
    MAX_MANIFEST_BYTES,
    MAX_SHARDS,
    MAX_SPLITS,
    InputLimitError,
    check_regular_file,
    parse_json,
    quote,
    read_bounded_bytes,
)
from .errors import BadShardError, ChecksumError, ManifestError, short_repr
from .filesystem import atomic_write, get_fs, is_url, join, storage_errors
from .format import FORMAT, VERSION, is_int
from .grid import Grid
from .splits import EVAL_SPLITS, SPLITS, unknown_split

MANIFEST_NAME = "manifest.json"
MAX_LISTED = 5
"""Problems (missing shards, bad entries) listed one by one before the rest are only counted."""

Count = Annotated[StrictInt, Field(ge=0)]
Dim = Annotated[StrictInt, Field(ge=1)]


class ShardInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: StrictStr
    """Relative to the dataset root."""
    videos: Count
    sha256: StrictStr

    @field_validator("path")
    @classmethod
    def _safe_path(cls, path: str) -> str:
        reason = unsafe_shard_path_reason(path)
        if reason:
            raise PydanticCustomError("shard_path", f"shard path {path!r} {reason}")  # no context: nothing substituted
        return path


class SplitInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    videos: Count
    shards: list[ShardInfo]

    @model_validator(mode="after")
    def _count_matches(self) -> SplitInfo:
        total = sum(s.videos for s in self.shards)
        if total != self.videos:
            raise PydanticCustomError("split_count", f"'videos' is {self.videos} but its shards hold {total}")
        return self


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True)

    dataset: StrictStr
    version: StrictInt
    classes: list[StrictStr] = Field(min_length=1)
    visual_dim: Dim
    audio_dim: Dim
    grid: Grid
    splits: dict[Literal[SPLITS], SplitInfo]  # type: ignore[valid-type]
    extra: dict[str, Any] = Field(default_factory=dict)
    """Any further top-level keys (kept on a round trip)."""

    @model_validator(mode="after")
    def _shards_listed_once(self) -> Manifest:
        seen: dict[str, str] = {}
        for name, split in self.splits.items():
            for shard in split.shards:
                if shard.path in seen:
                    raise PydanticCustomError(
                        "shard_twice",
                        f"split {name!r}: shard path {shard.path!r} is listed "
                        f"twice (also in split {seen[shard.path]!r})",
                    )
                seen[shard.path] = name
        return self

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split(self, name: str) -> SplitInfo:
        if name not in self.splits:
            raise ManifestError(f"manifest has no split {name!r} (it has: {', '.join(self.splits) or 'none'})")
        return self.splits[name]

    def to_dict(self) -> dict:
        d = {
            "format": FORMAT,
            "version": self.version,
            "dataset": self.dataset,
            "classes": list(self.classes),
            "visual_dim": self.visual_dim,
            "audio_dim": self.audio_dim,
            "grid": self.grid.to_dict(),
            "splits": {name: s.model_dump() for name, s in self.splits.items()},
        }
        return {**self.extra, **d}

    @classmethod
    def from_dict(cls, d: Any, where: str = "manifest") -> Manifest:
        """Check format and version, then every field; any problem is one ManifestError naming ``where``."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ManifestError(
                f"{where}: 'format' must be {FORMAT!r}, got {quote(d.get('format') if isinstance(d, dict) else d)}"
            )
        _check_counts(d, where)
        version = d.get("version")
        if not is_int(version):
            raise ManifestError(f"{where}: 'version' must be an integer, got {version!r}")
        if version > VERSION:
            raise ManifestError(
                f"{where}: shard format version {version} is newer than this clasp-dist supports "
                f"(<= {VERSION}); upgrade clasp-dist to read it"
            )
        fields = {k: v for k, v in d.items() if k in cls.model_fields and k != "extra"}
        try:
            return cls.model_validate({**fields, "extra": {k: v for k, v in d.items() if k not in _KNOWN_KEYS}})
        except ValidationError as exc:
            problems = _problems(exc.errors())
            raise ManifestError(
                f"{where}: "
                + "; ".join(problems[:MAX_LISTED])
                + (f"; ... {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else "")
            ) from None


def _check_counts(d: dict, where: str) -> None:
    """Splits, shards and classes against their bounds, before any of them is validated one by one."""
    splits, classes = d.get("splits"), d.get("classes")
    if isinstance(splits, dict) and len(splits) > MAX_SPLITS:
        raise ManifestError(f"{where}: 'splits' lists {len(splits)} splits, over the bound of {MAX_SPLITS}")
    if isinstance(splits, dict):
        shards = sum(
            len(s["shards"]) for s in splits.values() if isinstance(s, dict) and isinstance(s.get("shards"), list)
        )
        if shards > MAX_SHARDS:
            raise ManifestError(f"{where}: 'splits' lists {shards} shards, over the bound of {MAX_SHARDS}")
    if isinstance(classes, list) and len(classes) > MAX_CLASSES:
        raise ManifestError(f"{where}: 'classes' lists {len(classes)} classes, over the bound of {MAX_CLASSES}")


_KNOWN_KEYS = {"format", "version", "dataset", "classes", "visual_dim", "audio_dim", "grid", "splits"}


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about its dataset (from the manifest; stored in a checkpoint's model.json)."""

    dataset: str
    classes: list[str]
    visual_dim: int
    audio_dim: int
    fps: float
    feat_stride: int
    window: int

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> DatasetInfo:
        return cls(
            dataset=manifest.dataset,
            classes=list(manifest.classes),
            visual_dim=manifest.visual_dim,
            audio_dim=manifest.audio_dim,
            fps=manifest.grid.fps,
            feat_stride=manifest.grid.feat_stride,
            window=manifest.grid.window,
        )


# ------------------------------------------------------------------------------ validation messages
def _problems(errors: list[dict]) -> list[str]:
    """Pydantic's errors as this project's messages ('key: what is wrong'), each once, in field order.

    Missing keys are reported alone (the other checks would only repeat them)."""
    missing = sorted(e["loc"][0] for e in errors if e["type"] == "missing" and len(e["loc"]) == 1)
    if missing:
        return [f"missing key {k!r}" for k in missing]
    unknown = {e["loc"][1] for e in errors if e["loc"][:1] == ("splits",) and e["loc"][2:] == ("[key]",)}
    return list(
        dict.fromkeys(
            _message(e["loc"], e["type"], e["input"], e["msg"])
            for e in errors
            if e["loc"][:1] != ("splits",)
            or e["loc"][1:2] == ()
            or e["loc"][1] not in unknown
            or e["loc"][2:] == ("[key]",)
        )
    )


def _message(loc: tuple, kind: str, value: Any, msg: str) -> str:
    if not loc:  # a check across fields (a shard listed twice): its message is complete
        return msg
    key, rest = loc[0], loc[1:]
    got = short_repr(None if kind == "missing" else value)
    if key == "dataset":
        return f"'dataset' must be a string, got {got}"
    if key == "classes":
        return "'classes' must be a non-empty list of class names"
    if key in ("visual_dim", "audio_dim"):
        return f"{key!r} must be an integer >= 1, got {got}"
    if key == "grid":
        if not rest:
            return f"'grid' must be an object {{fps, feat_stride, window}}, got {type(value).__name__}"
        if rest[0] == "fps":
            return f"'grid.fps' must be a finite number > 0, got {got}"
        return f"'grid.{rest[0]}' must be an integer >= 1, got {got}"
    if key == "splits":
        return _split_message(rest, kind, value, msg)
    return f"{'.'.join(map(str, loc))}: {msg}"


def _split_message(rest: tuple, kind: str, value: Any, msg: str) -> str:
    if not rest:
        return f"'splits' must be an object {{name: {{videos, shards}}}}, got {type(value).__name__}"
    where = f"split {rest[0]!r}"
    if rest[1:] == ("[key]",):
        return unknown_split(rest[0])
    if kind in ("split_count", "shard_path"):
        return f"{where}: {msg}"
    if len(rest) >= 3 and rest[1] == "shards":
        return f"{where} shard {rest[2]} must be {{'path': str, 'videos': int >= 0, 'sha256': str}}"
    return f"{where} must be {{'videos': int >= 0, 'shards': [...]}}"


def unsafe_shard_path_reason(path: str) -> str | None:
    """Why a manifest shard path is refused (None = fine): relative to the root, inside it, a '.tar' file."""
    parts = path.split("/")
    if not path or path.startswith(("/", "\\")) or is_url(path) or (len(path) > 1 and path[1] == ":"):
        return "must be relative to the root"
    if any(p in ("", ".", "..") for p in parts) or "\\" in path:
        return "must be relative to the root and stay inside it (no '.', '..', empty or '\\' steps)"
    if not path.endswith(".tar"):
        return "must name a '.tar' file"
    return None


# ------------------------------------------------------------------------------- splits with ground truth
UNLABELLED_SPLITS = "unlabelled_splits"
"""Manifest key listing the evaluation splits without ground truth (ActivityNet's ``testing`` subset)."""


def unlabelled_splits(manifest: Manifest) -> list[str]:
    """The evaluation splits the manifest says carry no ground-truth segments (written by the converters
    and by ``index``)."""
    names = manifest.extra.get(UNLABELLED_SPLITS, [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ManifestError(f"manifest: {UNLABELLED_SPLITS!r} must be a list of split names, got {short_repr(names)}")
    return names


def final_eval_split(manifest: Manifest) -> str:
    """The split of a run's final pass: the last evaluation split (``test``, then ``validation``) that holds
    videos with ground truth."""
    unlabelled = unlabelled_splits(manifest)
    for name in reversed(EVAL_SPLITS):
        if name in manifest.splits and manifest.splits[name].videos and name not in unlabelled:
            return name
    raise ManifestError(
        f"dataset {manifest.dataset!r}: no evaluation split with ground truth (unlabelled: {unlabelled or 'none'}; "
        f"splits: {', '.join(manifest.splits)})"
    )


# ------------------------------------------------------------------------------------ reading, writing
def manifest_path(root: str) -> str:
    return join(root, MANIFEST_NAME)


def write_manifest(root: str, manifest: Manifest, storage_cfg=None) -> None:
    fs, base = get_fs(root, storage_cfg)
    with storage_errors(root, storage_cfg), atomic_write(fs, join(base, MANIFEST_NAME)) as f:
        f.write((json.dumps(manifest.to_dict(), indent=1) + "\n").encode())


def read_manifest(root: str, storage_cfg=None) -> Manifest:
    """Read and check ``<root>/manifest.json`` (format, version, dims, counts)."""
    try:
        with storage_errors(root, storage_cfg):
            raw = read_bounded_bytes(manifest_path(root), MAX_MANIFEST_BYTES, MANIFEST_NAME, storage_cfg)
    except InputLimitError as exc:
        raise ManifestError(f"dataset root {quote(root, 200)}: {exc}") from None
    except (FileNotFoundError, NotADirectoryError):
        raise ManifestError(
            f"no {MANIFEST_NAME} under dataset root {root!r}: not a clasp-shards dataset "
            "(a folder of WebDataset tars: `clasp data index data.root=ROOT` writes one; "
            "features: `clasp data prepare synth|unav100|anet13`)"
        ) from None
    try:
        d = parse_json(raw, manifest_path(root))  # depth-bounded, strict UTF-8
    except InputLimitError as exc:
        raise ManifestError(str(exc)) from None
    return Manifest.from_dict(d, manifest_path(root))


# ------------------------------------------------------------------------------------------ checksums
def verify_checksums(root: str, manifest: Manifest, storage_cfg=None, splits: Sequence[str] | None = None) -> list[str]:
    """sha256 of every shard against the manifest; returns the problems found (empty = all good).

    Missing shards are summarised in one problem (their count and the first few paths)."""
    fs, base = get_fs(root, storage_cfg)
    problems, missing = [], []
    for name, split in manifest.splits.items():
        if splits is not None and name not in splits:
            continue
        for shard in split.shards:
            try:
                with storage_errors(root, storage_cfg):
                    digest = file_sha256(fs, join(base, shard.path), base=base)
            except BadShardError as exc:
                problems.append(str(exc))
                continue
            except FileNotFoundError:
                missing.append(shard.path)
                continue
            except IsADirectoryError:
                problems.append(f"shard {shard.path}: is a directory, not a tar file")
                continue
            if digest != shard.sha256:
                problems.append(str(ChecksumError(f"shard {shard.path}: sha256 {digest} != manifest {shard.sha256}")))
    if missing:
        problems.insert(0, summarise_missing(missing))
    return problems


def summarise_missing(paths: Sequence[str]) -> str:
    """'N shard(s) missing: a, b, ... (first MAX_LISTED)' in one line, however many there are."""
    listed = ", ".join(paths[:MAX_LISTED]) + (
        f", ... (first {MAX_LISTED} of {len(paths)})" if len(paths) > MAX_LISTED else ""
    )
    return f"{len(paths)} shard(s) missing: {listed}"


def check_shard_file(fs, base: str, path: str) -> None:
    """A local shard must be a regular file inside the root (a FIFO would hang a reader, a link to /dev/zero
    never ends); a BadShardError naming the shard otherwise. Object stores hold only regular objects."""
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if "file" not in protocols:
        return
    try:
        check_regular_file(path, 1 << 62, "shard", root=base)
    except InputLimitError as exc:
        raise BadShardError(str(exc).split(": ", 1)[-1], shard=path) from None


def file_sha256(fs, path: str, chunk: int = 8 << 20, base: str | None = None) -> str:
    if base is not None:
        check_shard_file(fs, base, path)
    sha = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while block := f.read(chunk):
            sha.update(block)
    return sha.hexdigest()
