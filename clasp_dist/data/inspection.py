"""Whole-dataset validation behind ``clasp data inspect``.

Checks the manifest (format, version, dims, counts), optionally every shard's sha256, then decodes
every sample of every split with the shared :class:`SampleDecoder` (policy ``skip``, so that all
problems are counted rather than the first raised): dims, NaN/Inf, label and segment ranges,
stream lengths, members; counts per split against the manifest; and the weak-supervision rule
(``train`` samples carry no ``segments``; evaluation samples do).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import numpy as np

from ..config import DataConfig
from .errors import BadShardError, DataError
from .filesystem import get_fs, join, storage_errors
from .manifest import Manifest, check_shard_file, read_manifest, summarise_missing, verify_checksums
from .sample_rows import SampleDecoder, SkipStats
from .split_reader import make_decoder
from .splits import EVAL_SPLITS
from .tar_reader import iter_tar_samples


@dataclass
class SplitReport:
    name: str
    manifest_videos: int
    shards: int
    stats: SkipStats
    videos: int = 0
    steps: int = 0
    events: int = 0
    labels: int = 0
    classes_seen: set = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


@dataclass
class DatasetReport:
    root: str
    manifest: Manifest | None
    splits: list[SplitReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(not s.problems for s in self.splits)

    def all_problems(self) -> list[str]:
        return self.problems + [p for s in self.splits for p in s.problems]

    def table(self) -> str:
        m = self.manifest
        head = (
            f"dataset {m.dataset!r} at {self.root}: format v{m.version}, {m.num_classes} classes, "
            f"visual {m.visual_dim}-d, audio {m.audio_dim}-d, grid {m.grid.fps:g} fps / stride "
            f"{m.grid.feat_stride} / window {m.grid.window} ({m.grid.step_s:.3f} s per step)"
        )
        cols = (
            "split",
            "shards",
            "videos",
            "manifest",
            "skipped",
            "truncated",
            "extra members",
            "mean T",
            "labels/vid",
            "events",
            "classes",
        )
        rows = [cols] + [
            (
                s.name,
                s.shards,
                s.videos,
                s.manifest_videos,
                s.stats.skipped,
                s.stats.truncated,
                s.stats.extra_members,
                f"{s.steps / max(1, s.videos):.1f}",
                f"{s.labels / max(1, s.videos):.2f}",
                s.events if s.name in EVAL_SPLITS else "-",
                len(s.classes_seen),
            )
            for s in self.splits
        ]
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(cols))]
        lines = ["  ".join(str(v).rjust(w) for v, w in zip(r, widths)) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        verdict = (
            "OK" if self.ok else f"{len(self.all_problems())} problem(s):\n  " + "\n  ".join(self.all_problems()[:50])
        )
        return "\n".join([head, *lines, verdict])


def inspect_dataset(
    root: str, storage_cfg=None, verify: bool = True, length_tolerance: int = 1, data_cfg=None
) -> DatasetReport:
    """Validate everything under ``root``; never raises on data problems, they land in the report.

    ``data_cfg`` (a :class:`~clasp_dist.config.DataConfig`) supplies the decoder's bounds and tolerances;
    ``length_tolerance`` overrides its ``length_mismatch_tolerance``. Missing shards are summarised
    in one problem (count and the first few)."""
    try:
        manifest = read_manifest(root, storage_cfg)
    except DataError as exc:
        return DatasetReport(root, None, problems=[str(exc)])
    report = DatasetReport(root, manifest)
    if verify:
        report.problems += verify_checksums(root, manifest, storage_cfg)
    data_cfg = replace(data_cfg or DataConfig(), length_mismatch_tolerance=length_tolerance)
    fs, base = get_fs(root, storage_cfg)
    for name, split in manifest.splits.items():
        decoder = make_decoder(manifest, data_cfg, include_segments=name in EVAL_SPLITS, policy="skip")
        rep = SplitReport(name, split.videos, len(split.shards), SkipStats(split=name, max_messages=50))
        missing: list[str] = []
        for shard in split.shards:
            if not _inspect_shard(fs, join(base, shard.path), shard.videos, decoder, rep, root, storage_cfg):
                missing.append(shard.path)
                rep.stats.add_lost(shard.videos)  # counted here, listed once below
        rep.problems += [f"split {name}: {m}" for m in rep.stats.messages]
        if missing:
            rep.problems.append(f"split {name}: {summarise_missing(missing)}")
        if rep.stats.seen != split.videos:
            rep.problems.append(f"split {name}: manifest lists {split.videos} videos, shards hold {rep.stats.seen}")
        report.splits.append(rep)
    return report


def _inspect_shard(fs, path: str, expected: int, decoder: SampleDecoder, rep: SplitReport, root, storage_cfg) -> bool:
    """Decode one shard into the report; False when the shard file does not exist (counted by the caller)."""
    decoded = 0
    try:
        check_shard_file(fs, path.rsplit("/", 1)[0] if "/" in path else ".", path)  # no FIFO, device, escaping link
        with storage_errors(root, storage_cfg), fs.open(path, "rb") as f:
            for raw in iter_tar_samples(f, path, expected, decoder.max_member_bytes, decoder.strict_members):
                decoded += 1
                _check_weak_supervision(raw, rep, path)
                row = decoder(raw)
                rep.stats.record(row["error"], row["truncated_steps"], row["extra_members"])
                if not row["error"]:
                    _tally(row, rep)
    except BadShardError as exc:
        rep.stats.add_lost(max(0, expected - decoded), str(exc))
    except FileNotFoundError:
        return False
    except IsADirectoryError:
        rep.stats.add_lost(expected, f"shard {path}: is a directory, not a tar file")
    return True


def _check_weak_supervision(raw: dict, rep: SplitReport, shard: str) -> None:
    try:
        meta = json.loads(raw.get("meta.json", b"{}"))
    except (ValueError, RecursionError):
        return  # the decoder reports bad JSON
    has = isinstance(meta, dict) and "segments" in meta
    if rep.name == "train" and has:
        rep.problems.append(
            f"shard {shard}: train sample {raw.get('__key__')!r} carries segments "
            "(weak supervision: training shards hold video labels only)"
        )


def _tally(row: dict, rep: SplitReport) -> None:
    rep.videos += 1
    rep.steps += row["num_steps"]
    rep.labels += len(row["labels"])
    rep.classes_seen.update(np.asarray(row["labels"]).tolist())
    if "segments" in row:
        rep.events += len(json.loads(row["segments"]))
