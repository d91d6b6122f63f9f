"""Experiment tracking at the end of a run: the run's hyper-parameters (TensorBoard HParams) and the final pass's
metrics next to the per-epoch scalars the train loop writes, in the run's ``tensorboard/`` folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import Config, to_dict
from .config.loader import flatten


def hparam_values(cfg: Config) -> dict[str, Any]:
    """The resolved config as flat ``section.key`` hyper-parameters; values TensorBoard cannot hold (None,
    lists) become their JSON text."""
    return {
        key: value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
        for key, value in sorted(flatten(to_dict(cfg)).items())
    }


def final_scalars(metrics: dict) -> dict[str, float]:
    """``<split>/map@<tIoU>`` and ``<split>/map_average`` of the final pass in a run's ``metrics.json`` document."""
    final = metrics["final"]
    split = final["split"]
    return {
        f"{split}/map_average" if key == "average" else f"{split}/map@{key}": float(value)
        for key, value in final.items()
        if key != "split" and isinstance(value, (int, float))
    }


def log_final_to_tensorboard(run_dir: Path, cfg: Config, metrics: dict) -> None:
    """Write the final pass's mAP (at the best epoch's step) and the HParams entry (hyper-parameters against the
    final and best validation averages) into ``<run_dir>/tensorboard``."""
    from torch.utils.tensorboard import SummaryWriter

    step = metrics.get("best_epoch") or 0
    scalars = final_scalars(metrics)
    with SummaryWriter(str(Path(run_dir) / "tensorboard")) as writer:
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, step)
        split = metrics["final"]["split"]
        results = {f"hparam/{split}_map_average": scalars[f"{split}/map_average"]}
        val = (metrics.get("validation") or {}).get("average")
        if isinstance(val, (int, float)):
            results["hparam/val_map_average"] = float(val)
        writer.add_hparams(hparam_values(cfg), results, run_name=".")


# MLflow (opt-in: tracking.mlflow_uri). mlflow is imported only when the key is set (extra `mlflow`).

NOT_A_METRIC = ("epoch", "global_step", "best_epoch", "train_videos")
"""Numbers in an epoch record that are the step or bookkeeping, not metrics."""


def absolute_mlflow_uri(uri: str) -> str:
    """`uri` with a relative local path (``file:runs/mlruns``, ``runs/mlruns``) made absolute: Ray's workers and
    Tune's trials run in other working directories than the command."""
    if uri.startswith("file:") and not uri.startswith("file:/"):
        return "file:" + str(Path(uri[len("file:") :]).resolve())
    if "://" not in uri and ":" not in uri.split("/")[0]:
        return "file:" + str(Path(uri).resolve())
    return uri


def allow_mlflow_file_store(uri: str) -> None:
    """MLflow 3 refuses its local file store unless MLFLOW_ALLOW_FILE_STORE is set; a ``file:`` URI is the
    documented no-server choice here, so set it for this process (a server URI is left alone)."""
    import os

    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def mlflow_name(key: str) -> str:
    """A metric name MLflow accepts (no ``@``): ``val_map@0.5`` -> ``val_map_0.5``."""
    return key.replace("@", "_")


def mlflow_epoch_metrics(metrics: dict, not_validated: float) -> dict[str, float]:
    """An epoch record's numeric metrics under MLflow names (losses, lr, throughput, validation mAP when the
    epoch was validated)."""
    return {
        mlflow_name(key): float(value)
        for key, value in metrics.items()
        if isinstance(value, (int, float))
        and not isinstance(value, bool)
        and key not in NOT_A_METRIC
        and not (key.startswith(("val_", "best_val")) and value == not_validated)
    }


def start_mlflow_run(cfg: Config, uri: str, run_dir: str):
    """Rank 0's MLflow run through Ray's ``setup_mlflow`` (the resolved config as flat ``section.key`` params);
    the mlflow module, or a no-op stand-in on the other ranks."""
    from ray.air.integrations.mlflow import setup_mlflow

    allow_mlflow_file_store(uri)
    return setup_mlflow(
        config=hparam_values(cfg),
        tracking_uri=uri,
        experiment_name=cfg.tracking.mlflow_experiment,
        run_name=cfg.run.name,
        create_experiment_if_not_exists=True,
        tags={"clasp.run_dir": str(run_dir)},
    )


def log_final_to_mlflow(uri: str, run_id: str, run_dir: Path, metrics: dict) -> None:
    """The final pass's mAP (``<split>/map_0.5``, ``<split>/map_average``) and the run's ``metrics.json``,
    ``config.yaml`` and plots (any ``*.png`` in the run directory) into the MLflow run `run_id`."""
    import mlflow

    allow_mlflow_file_store(uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    step = metrics.get("best_epoch") or 0
    for key, value in final_scalars(metrics).items():
        client.log_metric(run_id, mlflow_name(key), value, step=step)
    run_dir = Path(run_dir)
    for name in ("metrics.json", "config.yaml"):
        if (run_dir / name).is_file():
            client.log_artifact(run_id, str(run_dir / name))
    for plot in sorted(run_dir.rglob("*.png")):
        client.log_artifact(run_id, str(plot), artifact_path=str(plot.parent.relative_to(run_dir)))


def mlflow_tune_callback(cfg: Config):
    """Ray Tune's ``MLflowLoggerCallback`` for a sweep (one MLflow run per trial: its searched keys as params,
    every report as metrics), with metric names MLflow accepts; None when tracking.mlflow_uri is unset."""
    if not cfg.tracking.mlflow_uri:
        return None
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    class SweepMLflowCallback(MLflowLoggerCallback):
        def log_trial_result(self, iteration, trial, result):
            result = {mlflow_name(k): v for k, v in result.items() if not isinstance(v, str)}
            super().log_trial_result(iteration, trial, result)

    uri = absolute_mlflow_uri(cfg.tracking.mlflow_uri)
    allow_mlflow_file_store(uri)
    return SweepMLflowCallback(tracking_uri=uri, experiment_name=cfg.tracking.mlflow_experiment, save_artifact=False)
