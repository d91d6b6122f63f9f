"""A run's identity is its resolved config: what a rerun under an existing run name may change.

Rerunning with the same `run.name` (and `run.storage_path`) resumes the run from its latest registered
checkpoint, so the rerun's config must be the run's config. Keys fall in three groups:
  * operational keys (`OPERATIONAL`): where and how fast things run; they never change what is trained
    or how it is scored, and may always differ;
  * fixed keys (`FIXED`): the checkpoint cannot honour a change (DeepSpeed cannot load it, the model
    shapes differ, or the restored optimizer state silently keeps the old value): always refused;
  * every other key: refused unless the rerun names it in `run.resume_changes` (more `train.epochs`,
    another `eval_every`, the same dataset moved to `data.root=s3://...`).
The run's config is read from its latest registered checkpoint (`model.json`: what actually trained); a run
without one has trained nothing and starts afresh.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import compat
from ..config import Config, ConfigError, flatten, to_dict
from ..data.filesystem import get_arrow_fs, join
from .checkpoint import CheckpointError, parse_model_description
from .preflight import storage_uri

OPERATIONAL = (
    "run.name",
    "run.storage_path",
    "run.output_dir",
    "run.resume_changes",
    "storage.",
    "tracking.",
    "data.cache_dir",
    "data.read_num_cpus",
    "train.progress_bar",
    "train.max_failures",
    "train.cpus_per_worker",
    "train.torch_threads",
    "train.placement_strategy",
    "train.log_every_steps",
    "eval.batch_size",
    "eval.num_actors",
    "eval.actor_num_cpus",
    "eval.actor_num_gpus",
)
"""Keys (or section prefixes ending in '.') that never change the numbers: ignored when comparing."""

FIXED = {
    "model.": "the checkpoint's weights have the old model's shapes and modules",
    "deepspeed.zero_stage": "DeepSpeed's checkpoint shards are laid out per ZeRO stage",
    "deepspeed.bf16": "DeepSpeed's optimizer state is saved for one precision",
    "train.num_workers": "DeepSpeed's optimizer state is partitioned over the saved world size",
    "optim.lr": "the restored optimizer and scheduler state keep the old learning rate",
    "optim.weight_decay": "the restored optimizer state keeps the old weight decay",
    "optim.betas": "the restored optimizer state keeps the old betas",
}
"""Keys (or prefixes) a resumed run can never change, with the reason."""


class RunIdentityError(CheckpointError):
    """A rerun under an existing run name whose config differs from the run's; names the keys."""


@dataclass(frozen=True)
class Difference:
    key: str
    saved: Any
    now: Any

    @property
    def fixed_reason(self) -> str | None:
        return next((why for key, why in FIXED.items() if _matches(self.key, key)), None)

    def describe(self) -> str:
        why = self.fixed_reason
        text = f"  {self.key}: {self.saved!r} in the run, {self.now!r} now"
        return text + (f" (cannot change on resume: {why})" if why else "")


def _matches(key: str, pattern: str) -> bool:
    return key.startswith(pattern) if pattern.endswith(".") else key == pattern


def config_differences(saved: Config, now: Config) -> list[Difference]:
    """Every non-operational key whose value differs between the run's config and the rerun's."""
    old, new = flatten(to_dict(saved)), flatten(to_dict(now))
    return [
        Difference(key, old.get(key), new.get(key))
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key) and not any(_matches(key, p) for p in OPERATIONAL)
    ]


def dataset_differences(saved: dict, now: dict) -> list[Difference]:
    """Manifest facts the model depends on (classes, dims, grid): a mismatch is a model change."""
    return [
        Difference(f"dataset {key}", saved.get(key), value)
        for key, value in now.items()
        if saved.get(key) != value and key != "dataset"
    ]


def check_resume_changes(cfg: Config, run_label: str, differences: list[Difference]) -> list[Difference]:
    """Refuse the differences that are fixed or not named in `run.resume_changes`; return the accepted ones."""
    allowed = set(cfg.run.resume_changes)
    known = set(flatten(to_dict(cfg)))
    unknown = sorted(allowed - known)
    if unknown:
        raise ConfigError(f"config: run.resume_changes names unknown key(s) {unknown}")
    refused = [d for d in differences if d.fixed_reason or d.key.startswith("dataset ") or d.key not in allowed]
    if refused:
        raise RunIdentityError(refusal_message(cfg, run_label, differences))
    return differences


def refusal_message(cfg: Config, run_label: str, differences: list[Difference]) -> str:
    resumable = [d.key for d in differences if not d.fixed_reason and not d.key.startswith("dataset ")]
    lines = [
        f"run.name={cfg.run.name!r} already exists ({run_label}) with a different config; a rerun under "
        f"the same name resumes that run, so its config must match. Differences:",
        *(d.describe() for d in differences),
        "Either start a new run: add run.name=<new name> (the existing run is left as it is)",
    ]
    if len(resumable) == len(differences):
        lines[-1] += f"; or resume this run with these changes: add run.resume_changes=[{','.join(resumable)}]"
    elif resumable:
        lines[-1] += f"; {', '.join(resumable)} could change on resume (run.resume_changes=[...]), the others cannot"
    return "\n".join(lines) + "."


@dataclass(frozen=True)
class SavedRun:
    """An existing run under this name: its latest registered checkpoint's config, dataset and progress."""

    label: str
    """The checkpoint's path, for messages."""
    config: Config
    dataset: dict
    epochs_done: int
    result: Any
    """Ray Train's `Result` restored from the run's storage (its registered checkpoints and metrics)."""


def find_saved_run(cfg: Config) -> SavedRun | None:
    """The run under `run.storage_path/run.name` from its latest registered checkpoint, or None when it has
    none (nothing was trained: the rerun starts it afresh)."""
    result = registered_result(cfg)
    if result is None or result.checkpoint is None:
        return None
    ckpt = result.checkpoint
    path = f"{ckpt.path}/model.json"
    with ckpt.filesystem.open_input_stream(path) as handle:
        saved_cfg, info = parse_model_description(handle.read(), path)
    return SavedRun(ckpt.path, saved_cfg, asdict(info), int((result.metrics or {}).get("epoch", -1)) + 1, result)


def registered_result(cfg: Config):
    """Ray Train's `Result` of the run, or None when it never registered a checkpoint (Ray Train's own
    snapshot file: half-written checkpoint directories are never in it)."""
    import logging

    import pyarrow.fs as pafs
    from ray.train import Result

    fs, base = get_arrow_fs(storage_uri(cfg), cfg.storage)
    path = join(base, cfg.run.name)
    if fs.get_file_info(join(path, compat.RAY_TRAIN_SNAPSHOT_FILE)).type == pafs.FileType.NotFound:
        return None
    train_logger = logging.getLogger("ray.train")
    level = train_logger.level
    train_logger.setLevel(logging.WARNING)  # Ray logs "A run snapshot was found ..." at INFO on every read
    try:
        return Result.from_path(path, storage_filesystem=fs)
    finally:
        train_logger.setLevel(level)


def finished_message(cfg: Config, run_dir: Path, epochs_done: int, metrics: dict) -> str:
    final = metrics.get("final") or {"split": "test", **metrics.get("test", {})}  # runs from before "final"
    split, average = final.get("split", "test"), final.get("average")
    score = f"{split} avg mAP {average * 100:.2f}; " if isinstance(average, (int, float)) else ""
    return (
        f"[clasp-dist] run {cfg.run.name!r} is finished ({epochs_done} of {cfg.train.epochs} epochs trained): "
        f"{score}results in {run_dir} (metrics.json, {split}/, export/). Nothing to train. To train it longer: "
        f"train.epochs=N run.resume_changes=[train.epochs]; to train again: a new run.name."
    )


def record_changes(run_dir: Path, epochs_done: int, changes: list[Difference]) -> None:
    """Append the accepted changes to `config_changes.jsonl` (config.yaml keeps the run's first config)."""
    line = {"after_epochs": epochs_done, "changes": {d.key: {"from": d.saved, "to": d.now} for d in changes}}
    with open(run_dir / "config_changes.jsonl", "a") as handle:
        handle.write(json.dumps(line) + "\n")
