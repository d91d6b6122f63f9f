"""Running a sweep: each trial's config and resources, the Tune trainable and the Tune run.

Pattern for Ray Train V2: a Tune *function* trainable builds and fits the `TorchTrainer` (via
`run_training`) with `TuneReportCallback`, and the run name comes from the trial id, so an
interrupted sweep restores (`Tuner.restore`) without redoing finished trials.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

from ..config import load_config
from ..data.filesystem import absolute_location, get_arrow_fs, is_url, join
from ..tracking import mlflow_tune_callback
from ..training.capacity import growable_resources, training_cpus
from .identity import SweepSpec
from .spaces import trial_overrides, validate_space, yaml_literal


def absolute_base(base: list[str]) -> list[str]:
    """Local relative paths made absolute: Tune runs each trial in its own working directory."""
    out = []
    for item in base:
        key, _, value = item.partition("=")
        if (
            key in ("data.root", "run.output_dir", "run.storage_path", "data.cache_dir")
            and value
            and not is_url(value)
            and not value.startswith("~")
        ):
            value = absolute_location(value)
        elif key == "config" and value.endswith((".yaml", ".yml")) and Path(value).exists():
            value = absolute_location(value)
        out.append(f"{key}={value}" if _ else item)
    return out


def trial_config(base: list[str], params: dict, trial_id: str, sweep_uri: str):
    """A trial's config: checkpoints and run files under `<sweep>/trials/<trial_id>` (local or object storage).
    With a sweep in object storage, the local run directory is scratch on the trial's node; the trainer
    copies the run's files next to its checkpoints."""
    overrides = base + [f"{k}={yaml_literal(v)}" for k, v in trial_overrides(params).items()]
    trials = join(sweep_uri, "trials")
    local = trials if not is_url(sweep_uri) else str(Path(tempfile.gettempdir()) / "clasp-dist-trials")
    # quoted: a Tune trial id like "57161_00000" would otherwise parse as the YAML integer 5716100000
    overrides += [
        f"run.name={yaml_literal(str(trial_id))}",
        f"run.output_dir={local}",
        f"run.storage_path={trials}",
        "train.progress_bar=off",
        "tracking.mlflow_uri=null",  # the sweep's MLflowLoggerCallback logs each trial (one MLflow run per trial)
    ]
    return load_config(overrides)


def make_trainable(base: list[str], sweep_uri: str):
    def trainable(params: dict) -> None:
        import ray.tune
        from ray.tune.integration.ray_train import TuneReportCallback

        from ..training.driver import (
            run_training,
        )  # torch and the training stack: in the trial only (--help stays light)

        started = time.time()
        trial_id = ray.tune.get_context().get_trial_id()
        cfg = trial_config(base, params, trial_id, sweep_uri)
        summary = run_training(cfg, callbacks=[TuneReportCallback()])
        final = {f"test_map@{k}": v for k, v in summary.metrics["test"].items() if _is_threshold(k)}
        ray.tune.report(
            {
                **final,
                "test_average": summary.metrics["test"]["average"],
                "val_average": summary.metrics["validation"]["average"],
                "done": True,
                "trial_started": started,
                "trial_finished": time.time(),
            }
        )

    return trainable


def _is_threshold(key: str) -> bool:
    try:
        float(key)
        return True
    except ValueError:
        return False


TRIAL_CPU = 0.25
"""CPU held by each trial's own actor (it only drives Ray Train); Tune rejects a zero-CPU trial."""


def trial_resources(cfg) -> dict:
    """The trial's own actor holds a quarter CPU; its train workers and evaluator actors ask for theirs."""
    return {"CPU": TRIAL_CPU}


def cpus_per_trial(cfg) -> float:
    """Peak CPUs one trial holds: its actor, its workers, the validation evaluator and two read tasks."""
    return TRIAL_CPU + training_cpus(cfg, read_tasks=2)


def trial_demand(cfg) -> dict[str, float]:
    """Peak resources of one trial: its CPUs, and per train worker one GPU and `train.worker_resources`."""
    demand = {"CPU": cpus_per_trial(cfg)}
    if cfg.train.use_gpu:
        demand["GPU"] = float(cfg.train.num_workers)
    for key, amount in cfg.train.worker_resources.items():
        demand[key] = demand.get(key, 0.0) + cfg.train.num_workers * float(amount)
    return demand


def max_concurrent_trials(cfg, resources: dict) -> int:
    """As many trials as `resources` (what the cluster can grow to) hold at their peak, at least one.

    On 2 CPUs with the defaults (0.25 + 0.5 per worker + 0.5 evaluator + 2 x 0.25 reads = 1.75) that is
    one trial at a time: two would leave the validation reads no CPU and deadlock."""
    demand = trial_demand(cfg)
    total_cpu = resources.get("CPU", 0)
    if total_cpu and demand["CPU"] > total_cpu:
        print(
            f"[clasp-dist] warning: one trial needs up to {demand['CPU']:g} CPUs, the cluster has {total_cpu:g}; "
            "lower train.num_workers / train.cpus_per_worker / eval.actor_num_cpus if it stalls",
            flush=True,
        )
    fits = [math.floor(resources.get(key, 0) / need) for key, need in demand.items() if need > 0]
    return max(1, min(fits))


def sweep_concurrency(cfg, max_concurrent: int | None = None, cluster_yaml: str | None = None) -> int | None:
    """`--max-concurrent`, else what the cluster can grow to (`clasp_dist.training.capacity.growable_resources`); None
    (Tune's own limit on pending trials, whose demand the autoscaler sees) when an autoscaler of unknown size runs."""
    if max_concurrent:
        return max_concurrent
    resources, source = growable_resources(cluster_yaml)
    if resources is None:
        print(
            f"[clasp-dist] {source}: trials are not capped, Tune queues them and the autoscaler grows the "
            "cluster for their demand; --max-concurrent N or --cluster-config <ray up YAML> sets the cap",
            flush=True,
        )
        return None
    count = max_concurrent_trials(cfg, resources)
    shown = ", ".join(f"{k} {resources.get(k, 0):g}" for k in sorted(trial_demand(cfg)))
    print(
        f"[clasp-dist] up to {count} trial(s) at once, from {source} ({shown}); --max-concurrent N overrides",
        flush=True,
    )
    return count


def tune_storage(sweep_uri: str, storage_cfg=None) -> tuple[str, object]:
    """(storage_path, storage_filesystem) for Tune: a local path as is, object storage through the project's
    pyarrow filesystem (endpoint and credentials of `storage.*`)."""
    if not is_url(sweep_uri):
        return sweep_uri, None
    fs, path = get_arrow_fs(sweep_uri, storage_cfg)
    return path, fs


def run_sweep(spec: SweepSpec, sweep_uri: str, max_concurrent: int | None = None, cluster_yaml: str | None = None):
    """Run the sweep `spec` in `sweep_uri`, or continue it when Tune's state is there (`claim_sweep_dir` has
    checked that the folder holds this very sweep); returns the Tune ResultGrid. Ray must be initialised."""
    import ray.tune
    from ray.tune.schedulers import ASHAScheduler

    cfg = load_config(spec.base)
    space = spec.space()
    validate_space(spec.base, space)
    if not any(key.startswith("data.") for key in space):  # every trial reads the base dataset: prepare it once
        from ..training.driver import resolve_dataset

        resolve_dataset(cfg)
    trainable = ray.tune.with_resources(make_trainable(spec.base, sweep_uri), trial_resources(cfg))
    storage_path, storage_fs = tune_storage(sweep_uri, cfg.storage)
    tuner_path = f"{storage_path.rstrip('/')}/tune"
    if ray.tune.Tuner.can_restore(tuner_path, storage_filesystem=storage_fs):
        print(f"[clasp-dist] resuming sweep {spec.identity()} at {sweep_uri}", flush=True)
        return ray.tune.Tuner.restore(
            tuner_path, trainable, resume_errored=True, param_space=space, storage_filesystem=storage_fs
        ).fit()
    # training_iteration = epoch + 1 (one report per epoch), so ASHA's rungs (eval_every * 4^k) fall
    # on validated epochs; the final report after the test evaluation is one more iteration.
    scheduler = (
        ASHAScheduler(
            time_attr="training_iteration",
            max_t=cfg.train.epochs,
            grace_period=max(1, min(cfg.train.eval_every, cfg.train.epochs)),
        )
        if spec.sweep == "hparams"
        else None
    )
    tuner = ray.tune.Tuner(
        trainable,
        param_space=space,
        tune_config=ray.tune.TuneConfig(
            metric="val_average",
            mode="max",
            scheduler=scheduler,
            num_samples=spec.samples if spec.sweep == "hparams" else 1,
            max_concurrent_trials=sweep_concurrency(cfg, max_concurrent, cluster_yaml),
        ),
        run_config=ray.tune.RunConfig(
            name="tune",
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            failure_config=ray.tune.FailureConfig(max_failures=cfg.train.max_failures),
            verbose=1,
            callbacks=[c for c in [mlflow_tune_callback(cfg)] if c is not None],
        ),
    )
    return tuner.fit()
