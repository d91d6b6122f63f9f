"""Which dataset root a run reads: the one given, else ``data.root``, else the embedded semi-synthetic
dataset, generated once into ``data.cache_dir`` and reused (its folder name is a hash of the
``data.synth_*`` keys, so the same keys always find the same dataset)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path

from filelock import FileLock

from .errors import ManifestError
from .filesystem import is_url
from .manifest import read_manifest
from .synthetic import generate_dataset, get_profile, resolve_limits, synth_params

log = logging.getLogger(__name__)


def ensure_dataset(
    data_cfg, storage_cfg=None, root: str | None = None, workers: int | None = None, progress: bool = True
) -> str:
    """The dataset root to read: ``root`` when given, else ``data.root`` (both as they are: the reader
    checks the manifest), else the ``data.synth_*`` dataset under ``data.cache_dir``, generated once and
    reused (a file lock keeps concurrent callers on one machine from generating twice)."""
    if root or data_cfg.root:
        return root or data_cfg.root
    p = get_profile(data_cfg.synth_profile)
    limits = resolve_limits(p, data_cfg.synth_limit_per_split)
    rate = p.distractor_rate if data_cfg.synth_distractor_rate is None else data_cfg.synth_distractor_rate
    params = synth_params(p, data_cfg.synth_seed, limits, rate, None)
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    name = f"{p.name}-seed{data_cfg.synth_seed}-{key}"
    if is_url(data_cfg.cache_dir):  # object storage: shared by every node; the manifest is written last
        cached = data_cfg.cache_dir.rstrip("/") + "/" + name
        # concurrent first runs both generate the same bytes, and the second keeps the first one's manifest
        lock = contextlib.nullcontext()
    else:
        cached = str(Path(os.path.expanduser(data_cfg.cache_dir)) / name)
        lock = FileLock(cached + ".lock")  # creates the cache folder too
    with lock:
        if _cached(cached, params, storage_cfg):
            return cached
        log.info("generating the semi-synthetic %s dataset into %s", p.name, cached)
        return generate_dataset(
            cached, p, data_cfg.synth_seed, limits, rate, storage_cfg=storage_cfg, workers=workers, progress=progress
        )


def _cached(root: str, params: dict, storage_cfg=None) -> bool:
    try:
        return read_manifest(root, storage_cfg).extra.get("synth") == params
    except ManifestError:
        return False
