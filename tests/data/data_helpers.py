"""Helpers for the data tests: hand-made shards (good or deliberately broken) with a valid manifest."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from clasp_dist.data.format import FORMAT, VERSION, npy_bytes
from clasp_dist.data.grid import I3D_GRID

DV, DA, C = 8, 4, 5


def good_members(
    vid: str, steps: int = 6, labels=(1,), segments=((0.5, 1.5, 1),), dv: int = DV, da: int = DA, seed: int = 0
) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    meta = {
        "video_id": vid,
        "duration": steps * 0.32,
        "fps": 25.0,
        "feat_stride": 8,
        "window": 24,
        "labels": list(labels),
    }
    if segments is not None:
        meta["segments"] = [list(s) for s in segments]
    return {
        "visual.npy": npy_bytes(rng.standard_normal((steps, dv)).astype(np.float16)),
        "audio.npy": npy_bytes(rng.standard_normal((steps, da)).astype(np.float16)),
        "meta.json": json.dumps(meta).encode(),
    }


def tar_bytes(samples: Sequence[tuple[str, dict[str, bytes]]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for vid, members in samples:
            for suffix, data in members.items():
                info = tarfile.TarInfo(f"{vid}.{suffix}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_dataset_from_tars(
    root: Path,
    split_tars: dict[str, list[tuple[bytes, int]]],
    *,
    dv: int = DV,
    da: int = DA,
    num_classes: int = C,
    version: int = VERSION,
    sha_override: str | None = None,
) -> Path:
    """Write given tar bytes as shards of each split plus a manifest with their true sha256."""
    root.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, tars in split_tars.items():
        shards = []
        for i, (data, videos) in enumerate(tars):
            name = f"{split}-{i:06d}.tar"
            (root / name).write_bytes(data)
            shards.append({"path": name, "videos": videos, "sha256": sha_override or hashlib.sha256(data).hexdigest()})
        splits[split] = {"videos": sum(s["videos"] for s in shards), "shards": shards}
    manifest = {
        "format": FORMAT,
        "version": version,
        "dataset": "handmade",
        "classes": [f"c{i}" for i in range(num_classes)],
        "visual_dim": dv,
        "audio_dim": da,
        "grid": I3D_GRID.to_dict(),
        "splits": splits,
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def one_sample_dataset(
    root: Path, members: dict[str, bytes], vid: str = "vid0", split: str = "validation", with_good_neighbours: int = 0
) -> Path:
    """A dataset whose split holds ``with_good_neighbours`` good videos then the given one."""
    samples = [(f"good{i}", good_members(f"good{i}", seed=i)) for i in range(with_good_neighbours)]
    samples.append((vid, members))
    return write_dataset_from_tars(root, {split: [(tar_bytes(samples), len(samples))]})
