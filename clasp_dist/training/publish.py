"""A run's files next to its checkpoints when `run.storage_path` is object storage.

On a cluster the run directory (`run.output_dir/<name>`: config, metrics.jsonl, TensorBoard, export/, test/)
is on the local disk of whichever node wrote it: the driver's head node, or rank 0's worker node, which the
autoscaler may remove at any time. :func:`publish_run_files` copies those files to
`<run.storage_path>/<run.name>/` (beside Ray Train's `checkpoint_*` folders), so that tearing the cluster
down loses nothing. With a local storage path nothing is copied.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..data.filesystem import get_fs, is_url, join


def run_storage_dir(cfg) -> str | None:
    """`<run.storage_path>/<run.name>` when that is object storage, else None."""
    return join(cfg.run.storage_path, cfg.run.name) if is_url(cfg.run.storage_path) else None


def publish_run_files(cfg, run_dir: str | Path, names: Iterable[str] | None = None) -> list[str]:
    """Upload the files of `run_dir` (or only the entries `names`: files or folders) to the run's storage
    folder; returns the uploaded URIs (none with a local storage path)."""
    target = run_storage_dir(cfg)
    run_dir = Path(run_dir)
    if target is None or not run_dir.is_dir():
        return []
    fs, base = get_fs(target, cfg.storage)
    entries = [run_dir / n for n in names] if names is not None else list(run_dir.iterdir())
    files = [f for e in entries if e.exists() for f in ([e] if e.is_file() else sorted(e.rglob("*"))) if f.is_file()]
    uploaded = []
    for path in files:
        rel = path.relative_to(run_dir).as_posix()
        fs.put_file(str(path), join(base, rel))
        uploaded.append(join(target, rel))
    return uploaded


def restore_run_files(cfg, run_dir: str | Path, names: Iterable[str]) -> list[str]:
    """Download the files `names` from the run's storage folder where `run_dir` lacks them: a run resumed on
    another node (a replaced spot node) continues its `metrics.jsonl` instead of starting a new one."""
    target = run_storage_dir(cfg)
    if target is None:
        return []
    fs, base = get_fs(target, cfg.storage)
    fetched = []
    for name in names:
        local = Path(run_dir) / name
        if not local.exists() and fs.exists(join(base, name)):
            local.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(join(base, name), str(local))
            fetched.append(str(local))
    return fetched
