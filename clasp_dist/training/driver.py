"""Driver side of training: dataset, Ray Train `TorchTrainer` + DeepSpeed workers, best checkpoint, test.

`run_training(cfg)` is what `clasp train` (and each Tune trial) calls. It assumes Ray is
initialised (`ray.init()` honours RAY_ADDRESS, so the same code runs under `ray job submit`).
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..config import Config, ConfigError, save_config, to_dict
from ..data.errors import DataError, StorageError
from ..data.filesystem import get_arrow_fs, is_object_store, is_url
from ..data.manifest import DatasetInfo, final_eval_split, read_manifest
from ..data.roots import ensure_dataset
from ..data.split_reader import read_split
from ..data.splits import SPLITS
from ..evaluation.report import format_table, metrics_dict
from ..inference.predict import evaluate_checkpoint
from ..quiet_logs import DATA_ERROR_LINE, ray_train_logging
from ..tracking import absolute_mlflow_uri, log_final_to_mlflow, log_final_to_tensorboard
from .capacity import has_shared_local_disk, train_worker_resources
from .checkpoint import export_inference
from .engine import plan_batches
from .preflight import check_resource_request, check_storage_writable, storage_uri
from .publish import publish_run_files, run_storage_dir
from .run_identity import (
    check_resume_changes,
    config_differences,
    dataset_differences,
    find_saved_run,
    finished_message,
    record_changes,
)
from .worker import NOT_VALIDATED, train_loop_per_worker


@dataclass
class TrainingSummary:
    run_dir: Path
    export_dir: Path
    metrics: dict


class TrainingError(RuntimeError):
    """Training failed; the message leads with each failed rank's root cause (Ray Train truncates
    worker tracebacks in the middle, which is where the cause usually is)."""


_ERROR_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Za-z_]\w*(?:Error|Exception|Exit)(?:\([\w.]+\))?: .+$")


class TrainingDataError(TrainingError):
    """Training stopped on bad data (a bad sample, a broken shard, too many skipped samples): deterministic,
    so never retried by the failure policy. The message is one line naming shard, sample and field."""


def data_error_line(err: BaseException) -> str | None:
    """The data error behind a (Ray-wrapped) failure as one line, or None when it is not one."""
    seen, todo = set(), [err]
    while todo:
        exc = todo.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        wrapped = getattr(exc, "cause", None)  # Ray's task errors subclass the cause's class: look inside
        if wrapped is None and isinstance(exc, (DataError, TrainingDataError)) and not isinstance(exc, StorageError):
            return str(exc).splitlines()[0]
        todo += [
            exc.__cause__,
            exc.__context__,
            getattr(exc, "cause", None),
            getattr(exc, "controller_failure", None),
            *(getattr(exc, "worker_failures", None) or {}).values(),
        ]
    lines = [m.group(1) for ln in str(err).splitlines() if (m := DATA_ERROR_LINE.search(ln.strip()))]
    return lines[-1] if lines else None


def stop_on_bad_data_callback():
    """A Ray Train callback that stops the run at the first bad-data error of any worker, so that the
    failure policy (``FailureConfig``, meant for lost workers) does not retry a deterministic failure:
    raising from the callback ends the controller with a non-retryable error."""
    from ray.train import UserCallback

    class StopOnBadData(UserCallback):
        def after_exception(self, run_context, worker_exceptions):
            for rank, exc in sorted(worker_exceptions.items()):
                line = data_error_line(exc)
                if line is not None:
                    raise TrainingDataError(f"rank {rank}: {line}")

    return StopOnBadData()


def _raise_training_error(err: BaseException):
    line = data_error_line(err)
    if line is not None:
        raise TrainingDataError(line) from err
    raise TrainingError(_root_causes(err)) from err


def _root_causes(err: BaseException) -> str:
    """'rank R: <innermost non-Ray error line>' per failed worker, then Ray's own message."""
    failures = getattr(err, "worker_failures", None) or {}
    lines = []
    for rank, failure in sorted(failures.items()):
        text = "\n".join(str(x) for x in (failure, getattr(failure, "__cause__", None)) if x is not None)
        causes = [
            ln.strip()
            for ln in text.splitlines()
            if _ERROR_LINE.match(ln.strip()) and not ln.strip().startswith("ray.")
        ]
        lines.append(f"rank {rank}: {causes[-1] if causes else type(failure).__name__}")
    head = "training failed: " + ("; ".join(lines) if lines else f"{type(err).__name__}")
    return f"{head}\n{err}"


def resolve_dataset(cfg: Config) -> str:
    """`data.root` as is, or the cached semi-synthetic dataset for `data.synth_*` (generated once)."""
    if cfg.data.root:
        return cfg.data.root
    if not is_url(cfg.data.cache_dir) and not has_shared_local_disk():
        raise ConfigError(
            f"data.root is empty, so the semi-synthetic {cfg.data.synth_profile!r} dataset would be generated into "
            f"data.cache_dir={cfg.data.cache_dir!r} on this machine, which this cluster's other nodes cannot read. "
            "Set data.cache_dir=s3://<bucket>/<prefix> (generated there once, then reused by every run) or "
            "data.root=s3://<bucket>/<prefix> holding a prepared dataset (clasp data prepare)"
        )
    return ensure_dataset(cfg.data, cfg.storage)


def dataset_info(root: str, cfg: Config) -> tuple[DatasetInfo, object]:
    manifest = read_manifest(root, cfg.storage)
    for split in SPLITS:
        if split not in manifest.splits:
            raise ValueError(f"{root}/manifest.json: no {split!r} split; training needs train, validation and test")
    final_eval_split(manifest)  # a dataset without any ground truth fails here, not after training
    info = DatasetInfo.from_manifest(manifest)
    return info, manifest


def check_resume_compatible(cfg: Config, saved, info: DatasetInfo | None = None) -> list:
    """A rerun under an existing run name resumes it: refuse it up front, naming the keys, when its config
    (or, given `info`, its dataset) differs from the run's (`clasp_dist.training.run_identity`); return the
    differences accepted through `run.resume_changes`."""
    if saved is None:
        return []
    differences = config_differences(saved.config, cfg)
    if info is not None:
        differences = dataset_differences(saved.dataset, asdict(info)) + differences
    return check_resume_changes(cfg, saved.label, differences)


def build_trainer(
    cfg: Config, root: str, info: DatasetInfo, num_train_videos: int, run_dir: Path, callbacks: list | None = None
):
    import ray.train
    from ray.train.torch import TorchTrainer

    resources = train_worker_resources(cfg)
    storage = storage_uri(cfg)
    storage_fs = None
    if is_object_store(storage):
        storage_fs, storage = get_arrow_fs(storage, cfg.storage)
    ingest = ray.train.DataConfig.default_ingest_options()
    ingest.preserve_order = True  # deterministic order -> reproducible seeded runs
    data_config = ray.train.DataConfig(datasets_to_split=["train"], execution_options=ingest)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": to_dict(cfg),
            "dataset": asdict(info),
            "data_root": root,
            "run_dir": str(run_dir),
            "num_train_videos": num_train_videos,
            "interactive": sys.stdout.isatty(),
            "mlflow_uri": absolute_mlflow_uri(cfg.tracking.mlflow_uri) if cfg.tracking.mlflow_uri else None,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.train.num_workers,
            use_gpu=cfg.train.use_gpu,
            resources_per_worker=resources,
            placement_strategy=cfg.train.placement_strategy,
        ),
        run_config=ray.train.RunConfig(
            name=cfg.run.name,
            storage_path=storage,
            storage_filesystem=storage_fs,
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=cfg.run.keep_checkpoints,
                checkpoint_score_attribute="val_average",
                checkpoint_score_order="max",
            ),
            failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
            logging_config=ray_train_logging(),
            callbacks=[stop_on_bad_data_callback(), *(callbacks or [])],
        ),
        datasets={"train": read_split(root, "train", cfg.data, cfg.storage, include_segments=False)},
        dataset_config=data_config,
    )


def best_checkpoint(result):
    """The reported checkpoint with the highest validation average mAP (latest among equals)."""
    candidates = [(m.get("val_average", NOT_VALIDATED), m.get("epoch", -1), c) for c, m in result.best_checkpoints]
    if not candidates:
        if result.checkpoint is None:
            raise RuntimeError("training reported no checkpoint")
        return result.checkpoint, {}
    val, epoch, ckpt = max(candidates, key=lambda t: (t[0], t[1]))
    metrics = next(m for c, m in result.best_checkpoints if c is ckpt)
    return ckpt, metrics


def _log_final_to_mlflow(cfg: Config, result, run_dir: Path, metrics: dict, log) -> None:
    """The final pass and the run's files into the MLflow run the train loop opened (tracking.mlflow_uri)."""
    run_id = (getattr(result, "metrics", None) or {}).get("mlflow_run_id")
    if not cfg.tracking.mlflow_uri or not run_id:
        return
    uri = absolute_mlflow_uri(cfg.tracking.mlflow_uri)
    log_final_to_mlflow(uri, run_id, run_dir, metrics)
    log(f"[clasp-dist] MLflow run {run_id} in {uri} (experiment {cfg.tracking.mlflow_experiment!r})")


def run_training(cfg: Config, log=print, callbacks: list | None = None) -> TrainingSummary:
    """Train, pick the best checkpoint by validation mAP, evaluate it on test, write the run directory."""
    started = time.time()
    run_dir = Path(cfg.run.output_dir).expanduser().resolve() / cfg.run.name
    plan_batches(cfg, cfg.train.num_workers)  # batch arithmetic on the driver, before any resource is requested
    check_storage_writable(cfg)
    check_resource_request(cfg)
    saved = find_saved_run(cfg)
    changes = check_resume_compatible(cfg, saved)
    finished = saved is not None and saved.epochs_done >= cfg.train.epochs
    if finished and not changes and (run_dir / "metrics.json").is_file():
        metrics = json.loads((run_dir / "metrics.json").read_text())
        log(finished_message(cfg, run_dir, saved.epochs_done, metrics))
        return TrainingSummary(run_dir, run_dir / "export", metrics)
    root = resolve_dataset(cfg)
    info, manifest = dataset_info(root, cfg)
    changes = check_resume_compatible(cfg, saved, info)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "config.yaml").exists() or saved is None:  # a run's config.yaml is never rewritten
        save_config(cfg, run_dir / "config.yaml")
    if changes:
        record_changes(run_dir, saved.epochs_done, changes)
        log(
            f"[clasp-dist] resuming run {cfg.run.name!r} with changed {', '.join(d.key for d in changes)} "
            f"(run.resume_changes; recorded in {run_dir / 'config_changes.jsonl'})"
        )
    publish_run_files(cfg, run_dir, ["config.yaml", "config_changes.jsonl"])  # in storage from the start
    n_train = manifest.splits["train"].videos
    log(
        f"[clasp-dist] run {cfg.run.name!r}: {info.dataset} at {root} ({n_train} train videos, "
        f"{info.num_classes} classes, {info.visual_dim}/{info.audio_dim}-d), {cfg.train.num_workers} worker(s), "
        f"ZeRO-{cfg.deepspeed.zero_stage}, run dir {run_dir}"
    )
    if finished:  # every epoch trained, but the test pass never completed (or its settings changed)
        log(f"[clasp-dist] all {saved.epochs_done} epochs were trained; evaluating the best checkpoint on test")
        result = saved.result
    else:
        try:
            result = build_trainer(cfg, root, info, n_train, run_dir, callbacks).fit()
        except Exception as err:  # noqa: BLE001 - re-raised with its root cause on top
            _raise_training_error(err)
        if result.error:
            _raise_training_error(result.error)
    ckpt, best_metrics = best_checkpoint(result)
    export_dir = run_dir / "export"
    with ckpt.as_directory() as directory:
        export_inference(directory, export_dir)
    log(
        f"[clasp-dist] best checkpoint: epoch {best_metrics.get('epoch', -1) + 1} "
        f"(val mAP {best_metrics.get('val_average', NOT_VALIDATED) * 100:.2f}); evaluating on test"
    )
    final_split = final_eval_split(manifest)
    if final_split != "test":
        log(
            f"[clasp-dist] the test split has no ground truth (manifest: unlabelled_splits); final pass on {final_split}"
        )
    test_result = evaluate_checkpoint(str(export_dir), root, final_split, out_dir=str(run_dir / final_split))
    title = f"{final_split} split, best checkpoint (epoch {best_metrics.get('epoch', -1) + 1})"
    log(format_table(test_result, title=title))
    metrics = {
        **({"test": metrics_dict(test_result)} if final_split == "test" else {}),
        "final": {"split": final_split, **metrics_dict(test_result)},
        "validation": {k[len("val_map@") :]: v for k, v in best_metrics.items() if k.startswith("val_map@")}
        | {"average": best_metrics.get("val_average")},
        "best_epoch": best_metrics.get("epoch"),
        "dataset": {"root": root, "name": info.dataset},
        "wall_time_s": time.time() - started,
        "checkpoint": ckpt.path,
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log_final_to_tensorboard(run_dir, cfg, metrics)
    _log_final_to_mlflow(cfg, result, run_dir, metrics, log)
    if publish_run_files(cfg, run_dir):
        log(f"[clasp-dist] run files copied to {run_storage_dir(cfg)}")
    return TrainingSummary(run_dir, export_dir, metrics)
