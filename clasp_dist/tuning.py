"""Ray Tune sweeps: SPEC 4 ablation arms and hyper-parameter search, in the CLI's dotted keys.

Pattern for Ray Train V2: a Tune *function* trainable builds and fits the `TorchTrainer` (via
`run_training`) with `TuneReportCallback`, and the run name comes from the trial id, so an
interrupted sweep restores (`Tuner.restore`) without redoing finished trials.
"""
from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, apply_overrides, load_config, to_dict

ABLATION_ARMS: dict[str, dict[str, Any]] = {
    "base": {"model.use_meae": False, "model.use_atp": False},
    "meae+global+atp": {"model.csai_global": True, "model.csai_local": False},
    "meae+local+atp": {"model.csai_global": False, "model.csai_local": True},
    "full": {},
    "full/js": {"model.discrepancy": "js"},
    "full/argmax": {"model.discrepancy": "argmax"},
    "full/no-confidence": {"model.anchor_score": "agreement"},
    "full/thresholded": {"model.propagation": "thresholded", "model.prop_threshold": 0.3},
    "control/all-anchors": {"model.csai_global": True, "model.csai_local": False, "model.global_ratio": 1},
}
"""The SPEC 4 ablations; `full` is the preset's CLASP (global + local anchors, MLP fusion, attention).
`control/all-anchors` makes every valid step an anchor (top ceil(T/1)): the same ATP layer and refined
heads with no anchor selection, which separates what the anchors add from what the extra layer adds."""

CORE_ARMS = ["base", "meae+global+atp", "meae+local+atp", "full"]


def ablation_space(seeds: int, arms: list[str] | None = None) -> dict:
    from ray import tune

    return {"arm": tune.grid_search(arms or list(ABLATION_ARMS)), "train.seed": tune.grid_search(list(range(seeds)))}


def hparam_space() -> dict:
    from ray import tune

    return {"optim.lr": tune.loguniform(3e-5, 1e-3), "loss.lambda_p": tune.uniform(0.25, 2.0),
            "model.window": tune.choice([8, 16, 32]), "model.global_ratio": tune.choice([4, 8, 16]),
            "model.mil_ratio": tune.choice([4, 8, 16]), "decode.class_threshold": tune.choice([0.05, 0.1, 0.2])}


def trial_overrides(params: dict) -> dict:
    """A trial's flat {dotted key: value}: its arm's settings, then every other searched key."""
    flat = dict(ABLATION_ARMS[params["arm"]]) if "arm" in params else {}
    flat.update({k: v for k, v in params.items() if k != "arm"})
    return flat


def build_space(sweep: str, seeds: int = 3, arms: list[str] | None = None, grid: dict | None = None) -> dict:
    """The Tune param_space: the ablation grid (arms x seeds) or the hyper-parameter distributions, plus
    `grid` ({dotted key: [values]}) as extra grid dimensions."""
    from ray import tune

    if sweep not in ("ablation", "hparams"):
        raise ConfigError(f"sweep: unknown sweep {sweep!r}; choose ablation or hparams")
    if sweep == "ablation" and seeds < 1:
        raise ConfigError("sweep: --seeds must be >= 1")
    space = ablation_space(seeds, arms) if sweep == "ablation" else hparam_space()
    for key, values in (grid or {}).items():
        space[key] = tune.grid_search(list(values))
    return space


def validate_space(base: list[str], space: dict) -> None:
    """Every searched key must be a config key, every arm known and every value a valid config.

    Pure config checks (no Ray session): a sweep with a typo fails before any trial starts."""
    base_cfg = load_config(base)
    arms = _values(space["arm"]) if "arm" in space else []
    unknown = [arm for arm in arms if arm not in ABLATION_ARMS]
    if unknown:
        raise ConfigError(f"sweep: unknown ablation arm(s) {unknown}; arms: {', '.join(ABLATION_ARMS)}")
    keys = [k for k in space if k != "arm"]
    try:
        apply_overrides(to_dict(base_cfg), {k: None for k in keys})
    except ConfigError as err:
        raise ConfigError(f"sweep: search space: {err}") from None
    for arm in arms:
        load_config(base + [f"{k}={_yaml(v)}" for k, v in ABLATION_ARMS[arm].items()])
    for key in keys:
        for value in _values(space[key]):
            try:
                load_config(base + [f"{key}={_yaml(value)}"])
            except ConfigError as err:
                raise ConfigError(f"sweep: search space {key}={value!r}: {err}") from None


def _values(spec: Any) -> list:
    """Representative values of a param_space entry: a grid's values, a domain's bounds or a sample."""
    if isinstance(spec, dict) and "grid_search" in spec:
        return list(spec["grid_search"])
    categories = getattr(spec, "categories", None)
    if categories is not None:
        return list(categories)
    lower, upper = getattr(spec, "lower", None), getattr(spec, "upper", None)
    if lower is not None and upper is not None:
        return [lower, upper]
    sample = getattr(spec, "sample", None)
    return [sample()] if callable(sample) else [spec]


def absolute_base(base: list[str]) -> list[str]:
    """Local relative paths made absolute: Tune runs each trial in its own working directory."""
    out = []
    for item in base:
        key, _, value = item.partition("=")
        if key in ("data.root", "run.output_dir", "run.storage_path", "data.cache_dir") and value and \
                "://" not in value and not value.startswith("~"):
            value = str(Path(value).resolve())
        elif key == "config" and value.endswith((".yaml", ".yml")) and Path(value).exists():
            value = str(Path(value).resolve())
        out.append(f"{key}={value}" if _ else item)
    return out


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def trial_config(base: list[str], params: dict, trial_id: str, sweep_dir: Path):
    overrides = base + [f"{k}={_yaml(v)}" for k, v in trial_overrides(params).items()]
    # quoted: a Tune trial id like "57161_00000" would otherwise parse as the YAML integer 5716100000
    overrides += [f"run.name={_yaml(str(trial_id))}", f"run.output_dir={sweep_dir / 'trials'}",
                  f"run.storage_path={sweep_dir / 'trials'}", "train.progress_bar=off"]
    return load_config(overrides)


def make_trainable(base: list[str], sweep_dir: Path):
    def trainable(params: dict) -> None:
        import ray.tune
        from ray.tune.integration.ray_train import TuneReportCallback

        from .trainer import run_training

        trial_id = ray.tune.get_context().get_trial_id()
        cfg = trial_config(base, params, trial_id, sweep_dir)
        summary = run_training(cfg, callbacks=[TuneReportCallback()])
        final = {f"test_map@{k}": v for k, v in summary.metrics["test"].items() if _is_threshold(k)}
        ray.tune.report({**final, "test_average": summary.metrics["test"]["average"],
                         "val_average": summary.metrics["validation"]["average"], "done": True})

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
    return (TRIAL_CPU + cfg.train.num_workers * cfg.train.cpus_per_worker
            + cfg.eval.num_actors * cfg.eval.actor_num_cpus + 2 * cfg.data.read_num_cpus)


def max_concurrent_trials(cfg, resources: dict | None = None) -> int:
    """As many trials as the cluster's CPUs (and GPUs) hold at their peak, at least one.

    On 2 CPUs with the defaults (0.25 + 0.5 per worker + 0.5 evaluator + 2 x 0.25 reads = 1.75) that is
    one trial at a time: two would leave the validation reads no CPU and deadlock."""
    if resources is None:
        import ray

        resources = ray.cluster_resources()
    per_trial = cpus_per_trial(cfg)
    total_cpu = resources.get("CPU", 0)
    if total_cpu and per_trial > total_cpu:
        print(f"[clasp-dist] warning: one trial needs up to {per_trial:g} CPUs, the cluster has {total_cpu:g}; "
              "lower train.num_workers / train.cpus_per_worker / eval.actor_num_cpus if it stalls", flush=True)
    by_cpu = math.floor(total_cpu / per_trial) if per_trial > 0 else 1
    if cfg.train.use_gpu:
        by_gpu = math.floor(resources.get("GPU", 0) / max(1, cfg.train.num_workers))
        return max(1, min(by_cpu, by_gpu))
    return max(1, by_cpu)


def run_sweep(sweep: str, base: list[str], sweep_dir: Path, samples: int = 1, seeds: int = 3,
              arms: list[str] | None = None, grid: dict | None = None):
    """Run (or resume) a sweep; returns the Tune ResultGrid. Ray must be initialised."""
    import ray.tune
    from ray.tune.schedulers import ASHAScheduler

    base = absolute_base(base)
    cfg = load_config(base)
    space = build_space(sweep, seeds, arms, grid)
    validate_space(base, space)
    sweep_dir = sweep_dir.resolve()
    trainable = ray.tune.with_resources(make_trainable(base, sweep_dir), trial_resources(cfg))
    tuner_path = sweep_dir / "tune"
    if ray.tune.Tuner.can_restore(str(tuner_path)):
        print(f"[clasp-dist] resuming sweep at {tuner_path}", flush=True)
        tuner = ray.tune.Tuner.restore(str(tuner_path), trainable, resume_errored=True, param_space=space)
    else:
        # training_iteration = epoch + 1 (one report per epoch), so ASHA's rungs (eval_every * 4^k) fall
        # on validated epochs; the final report after the test evaluation is one more iteration.
        scheduler = (ASHAScheduler(time_attr="training_iteration", max_t=cfg.train.epochs,
                                   grace_period=max(1, min(cfg.train.eval_every, cfg.train.epochs)))
                     if sweep == "hparams" else None)
        tuner = ray.tune.Tuner(
            trainable, param_space=space,
            tune_config=ray.tune.TuneConfig(metric="val_average", mode="max", scheduler=scheduler,
                                            num_samples=samples if sweep == "hparams" else 1,
                                            max_concurrent_trials=max_concurrent_trials(cfg)),
            run_config=ray.tune.RunConfig(name="tune", storage_path=str(sweep_dir),
                                          failure_config=ray.tune.FailureConfig(max_failures=cfg.train.max_failures),
                                          verbose=1))
    return tuner.fit()


def result_rows(grid) -> list[dict]:
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        params = result.config or {}
        row = {"arm": params.get("arm", "hparams"), "seed": params.get("train.seed", 0),
               "trial_id": metrics.get("trial_id", ""), **{k: v for k, v in params.items() if k not in ("arm",)}}
        row.update({k: v for k, v in metrics.items() if k.startswith(("test_", "val_"))})
        row["error"] = str(result.error) if result.error else ""
        rows.append(row)
    return rows


def summarise_arms(rows: list[dict]) -> list[dict]:
    arms: dict[str, list[dict]] = {}
    for row in rows:
        if not row.get("error") and "test_average" in row:
            arms.setdefault(row["arm"], []).append(row)
    out = []
    for arm, members in arms.items():
        tests = [r["test_average"] for r in members]
        vals = [r.get("val_average", float("nan")) for r in members]
        out.append({"arm": arm, "seeds": len(members), "test_mean": statistics.fmean(tests),
                    "test_std": statistics.stdev(tests) if len(tests) > 1 else 0.0, "val_mean": statistics.fmean(vals)})
    return out


def write_outputs(rows: list[dict], sweep_dir: Path, base: list[str]) -> dict[str, Path]:
    """results.csv, results.md, ablation.png, best.yaml in the sweep directory."""
    from .viz import plot_ablation_bars

    sweep_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": sweep_dir / "results.csv", "md": sweep_dir / "results.md", "png": sweep_dir / "ablation.png",
             "best": sweep_dir / "best.yaml"}
    columns = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("arm", "seed"), k))
    with open(paths["csv"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    summary = summarise_arms(rows)
    paths["md"].write_text(markdown_table(rows, summary))
    if summary:
        plot_ablation_bars(paths["png"], [s["arm"] for s in summary], [s["test_mean"] * 100 for s in summary],
                           [s["test_std"] * 100 for s in summary])
    ok = [r for r in rows if not r.get("error") and "val_average" in r]
    if ok:
        best = max(ok, key=lambda r: r["val_average"])
        params = {"arm": best["arm"]} if best["arm"] in ABLATION_ARMS else {}
        params.update({k: v for k, v in best.items() if "." in k and not k.startswith(("test_", "val_"))})
        tree = to_dict(load_config(base + [f"{k}={_yaml(v)}" for k, v in trial_overrides(params).items()]))
        paths["best"].write_text("# Best trial by validation average mAP; use: jobs/train.py config=" +
                                 str(paths["best"]) + "\n" + yaml.safe_dump(tree, sort_keys=False))
    return paths


def markdown_table(rows: list[dict], summary: list[dict]) -> str:
    lines = ["| arm | seeds | test avg mAP (mean ± std) | val avg mAP (mean) |", "|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['arm']} | {s['seeds']} | {s['test_mean'] * 100:.2f} ± {s['test_std'] * 100:.2f} | "
                     f"{s['val_mean'] * 100:.2f} |")
    thresholds = sorted({k[len("test_map@"):] for r in rows for k in r if k.startswith("test_map@")}, key=float)
    lines += ["", "| arm | seed | " + " | ".join(f"test @{t}" for t in thresholds) + " | test avg | val avg |",
              "|---|---|" + "---|" * (len(thresholds) + 2)]
    for r in sorted(rows, key=lambda r: (str(r["arm"]), r.get("seed", 0))):
        cells = [f"{r.get(f'test_map@{t}', float('nan')) * 100:.2f}" for t in thresholds]
        lines.append(f"| {r['arm']} | {r.get('seed', '')} | " + " | ".join(cells) +
                     f" | {r.get('test_average', float('nan')) * 100:.2f} | {r.get('val_average', float('nan')) * 100:.2f} |")
    return "\n".join(lines) + "\n"
