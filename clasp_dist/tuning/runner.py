"""Ray Tune sweeps: SPEC 4 ablation arms and hyper-parameter search, in the CLI's dotted keys.

Pattern for Ray Train V2: a Tune *function* trainable builds and fits the `TorchTrainer` (via
`run_training`) with `TuneReportCallback`, and the run name comes from the trial id, so an
interrupted sweep restores (`Tuner.restore`) without redoing finished trials.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import math
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from ..training.capacity import growable_resources, training_cpus
from ..config import ConfigError, apply_overrides, flatten, load_config, to_dict
from ..data.filesystem import get_arrow_fs, get_fs, join

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

ARM_KEYS = sorted({key for overrides in ABLATION_ARMS.values() for key in overrides})
"""The config keys that tell the ablation arms apart (every key any arm sets)."""


def arm_settings(name: str) -> dict[str, Any]:
    """Every ARM_KEYS value of arm `name`: its own override, else the default preset's value (so `full` gives
    the preset's CLASP); what reads an arm back from a trial's config, or swaps one arm's policy for another's."""
    preset = _preset_arm_values()
    return {key: ABLATION_ARMS[name].get(key, preset[key]) for key in ARM_KEYS}


@functools.lru_cache(maxsize=1)
def _preset_arm_values() -> dict[str, Any]:
    flat = flatten(to_dict(load_config([])))
    return {key: flat[key] for key in ARM_KEYS}


def ablation_space(seeds: int, arms: list[str] | None = None) -> dict:
    from ray import tune

    return {"arm": tune.grid_search(arms or list(ABLATION_ARMS)), "train.seed": tune.grid_search(list(range(seeds)))}


def hparam_space() -> dict:
    from ray import tune

    return {
        "optim.lr": tune.loguniform(1e-4, 5e-3),  # around the default 2e-3 (docs/sweeps.md, the budget search)
        "loss.lambda_p": tune.uniform(0.25, 2.0),
        "model.window": tune.choice([8, 16, 32]),
        "model.global_ratio": tune.choice([4, 8, 16]),
        "model.mil_ratio": tune.choice([4, 8, 16]),
        "decode.class_threshold": tune.choice([0.05, 0.1, 0.2]),
    }


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
        if (
            key in ("data.root", "run.output_dir", "run.storage_path", "data.cache_dir")
            and value
            and "://" not in value
            and not value.startswith("~")
        ):
            value = str(Path(value).resolve())
        elif key == "config" and value.endswith((".yaml", ".yml")) and Path(value).exists():
            value = str(Path(value).resolve())
        out.append(f"{key}={value}" if _ else item)
    return out


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def trial_config(base: list[str], params: dict, trial_id: str, sweep_uri: str):
    """A trial's config: checkpoints and run files under `<sweep>/trials/<trial_id>` (local or object storage).
    With a sweep in object storage, the local run directory is scratch on the trial's node; the trainer
    copies the run's files next to its checkpoints."""
    overrides = base + [f"{k}={_yaml(v)}" for k, v in trial_overrides(params).items()]
    trials = join(sweep_uri, "trials")
    local = trials if "://" not in sweep_uri else str(Path(tempfile.gettempdir()) / "clasp-dist-trials")
    # quoted: a Tune trial id like "57161_00000" would otherwise parse as the YAML integer 5716100000
    overrides += [
        f"run.name={_yaml(str(trial_id))}",
        f"run.output_dir={local}",
        f"run.storage_path={trials}",
        "train.progress_bar=off",
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
    if "://" not in sweep_uri:
        return sweep_uri, None
    fs, path = get_arrow_fs(sweep_uri, storage_cfg)
    return path, fs


def run_sweep(spec: "SweepSpec", sweep_uri: str, max_concurrent: int | None = None, cluster_yaml: str | None = None):
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
        ),
    )
    return tuner.fit()


# ------------------------------------------------------------------------------------------ sweep identity
@dataclass(frozen=True)
class SweepSpec:
    """What a sweep is: its kind, its search-space arguments and its base config."""

    sweep: str
    """ablation or hparams."""
    base: list[str]
    """Base config overrides (`config=PRESET`, dotted keys), local paths made absolute."""
    seeds: int = 3
    """Seeds per ablation arm."""
    arms: Optional[list[str]] = None
    """Ablation arms (None = all)."""
    samples: int = 8
    """Trials of the hparams search."""
    grid: dict = field(default_factory=dict)
    """Extra grid dimensions {dotted key: [values]}."""

    def space(self) -> dict:
        return build_space(self.sweep, self.seeds, self.arms, self.grid)

    def described(self) -> dict:
        """The identity's content: the search space (as values) and the resolved base config, less `run.*`
        (each trial sets its own name and paths) and the progress bar."""
        space = {key: _describe(spec) for key, spec in self.space().items()}
        if self.sweep == "hparams":
            space["num_samples"] = self.samples
        tree = to_dict(load_config(self.base))
        tree.pop("run", None)
        tree["train"].pop("progress_bar", None)
        return {"sweep": self.sweep, "space": space, "config": tree}

    def identity(self) -> str:
        text = json.dumps(self.described(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def record(self) -> dict:
        return {"identity": self.identity(), **asdict(self), "described": self.described()}

    @classmethod
    def from_record(cls, record: dict) -> "SweepSpec":
        return cls(**{f: record[f] for f in ("sweep", "base", "seeds", "arms", "samples", "grid")})


def _describe(spec: Any) -> Any:
    """A param_space entry as plain values: a grid's values, a domain's type, sampler and bounds."""
    if isinstance(spec, dict) and "grid_search" in spec:
        return {"grid_search": list(spec["grid_search"])}
    sampler = getattr(spec, "sampler", None)
    return {
        "domain": type(spec).__name__,
        "sampler": type(sampler).__name__ if sampler else None,
        **{k: getattr(spec, k) for k in ("lower", "upper", "categories") if hasattr(spec, k)},
    }


SWEEP_RECORD = "sweep.json"
"""The sweep's identity record in its folder: written before the first trial, compared at every later start."""


class SweepIdentityError(ConfigError):
    """A sweep folder holds another sweep, or a Tune state with no identity record, or nothing to resume."""


def default_sweep_dir(spec: SweepSpec) -> str:
    """`<run.storage_path>/sweeps/<sweep>-<identity>`: a different sweep gets a folder of its own."""
    path = load_config(spec.base).run.storage_path
    root = path if "://" in path else str(Path(path).expanduser().resolve())
    return join(root, "sweeps", f"{spec.sweep}-{spec.identity()}")


def read_record(sweep_uri: str, storage_cfg=None) -> dict | None:
    fs, base = get_fs(sweep_uri, storage_cfg)
    try:
        with fs.open(join(base, SWEEP_RECORD), "rb") as handle:
            return json.loads(handle.read())
    except FileNotFoundError:
        return None


def claim_sweep_dir(spec: SweepSpec | None, sweep_uri: str, resume: bool, storage_cfg=None) -> SweepSpec:
    """The sweep to run in `sweep_uri`: a new one (its record written now), or the one recorded there.

    Refused: a folder that records a different sweep, a Tune state without a record, `resume` with nothing
    to resume. `spec=None` (with `resume`) continues whatever sweep the folder records."""
    record = read_record(sweep_uri, storage_cfg)
    if record is None:
        fs, base = get_fs(sweep_uri, storage_cfg)
        if resume:
            raise SweepIdentityError(f"--resume: {sweep_uri} holds no sweep ({SWEEP_RECORD} not found)")
        if fs.exists(join(base, "tune")):
            raise SweepIdentityError(
                f"{sweep_uri} holds a Tune experiment without a {SWEEP_RECORD} identity record "
                "(an older clasp-dist wrote it); give this sweep another --dir"
            )
        if "://" not in sweep_uri:
            fs.makedirs(base, exist_ok=True)
        with fs.open(join(base, SWEEP_RECORD), "wb") as handle:
            handle.write(json.dumps(spec.record(), indent=1, sort_keys=True).encode())
        return spec
    if spec is None or spec.identity() == record["identity"]:
        return SweepSpec.from_record(record)
    differs = describe_difference(record["described"], spec.described())
    raise SweepIdentityError(
        f"{sweep_uri} holds another sweep (identity {record['identity']}; this one is {spec.identity()}). They differ "
        f"in {'; '.join(differs[:8])}{' ...' if len(differs) > 8 else ''}. Give this sweep another --dir, or none "
        f"(each sweep then gets <run.storage_path>/sweeps/<sweep>-<identity>), or continue the stored sweep with "
        f"`jobs/tune.py --resume --dir {sweep_uri}`"
    )


def describe_difference(old: dict, new: dict) -> list[str]:
    """'key (old -> new)' for `sweep`, each `space.<key>` and each config key whose value differs."""

    def flat(d: dict) -> dict:
        return {"sweep": d["sweep"], **flatten({"space": d["space"]}), **flatten(d["config"])}

    a, b = flat(old), flat(new)
    return [f"{k} ({a.get(k, '-')!r} -> {b.get(k, '-')!r})" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def result_rows(grid) -> list[dict]:
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        params = result.config or {}
        row = {
            "arm": params.get("arm", "hparams"),
            "seed": params.get("train.seed", 0),
            "trial_id": metrics.get("trial_id", ""),
            **{k: v for k, v in params.items() if k not in ("arm",)},
        }
        row.update({k: v for k, v in metrics.items() if k.startswith(("test_", "val_", "trial_"))})
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
        out.append(
            {
                "arm": arm,
                "seeds": len(members),
                "test_mean": statistics.fmean(tests),
                "test_std": statistics.stdev(tests) if len(tests) > 1 else 0.0,
                "val_mean": statistics.fmean(vals),
            }
        )
    return out


def write_outputs(rows: list[dict], sweep_uri: str, base: list[str], storage_cfg=None) -> dict[str, str]:
    """results.csv, results.md, ablation.png, best.yaml in the sweep folder (local, or staged here and
    uploaded to object storage); returns {kind: location} of those written."""
    if "://" not in sweep_uri:
        return {k: str(p) for k, p in _write_outputs(rows, Path(sweep_uri), base, sweep_uri).items()}
    fs, remote = get_fs(sweep_uri, storage_cfg)
    with tempfile.TemporaryDirectory(prefix="clasp-sweep-") as tmp:
        written = _write_outputs(rows, Path(tmp), base, sweep_uri)
        for path in written.values():
            fs.put_file(str(path), join(remote, path.name))
    return {k: join(sweep_uri, p.name) for k, p in written.items()}


def _write_outputs(rows: list[dict], out: Path, base: list[str], sweep_uri: str) -> dict[str, Path]:
    from ..viz import plot_ablation_bars  # matplotlib

    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": out / "results.csv",
        "md": out / "results.md",
        "png": out / "ablation.png",
        "best": out / "best.yaml",
    }
    columns = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("arm", "seed"), k))
    with open(paths["csv"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    summary = summarise_arms(rows)
    paths["md"].write_text(markdown_table(rows, summary))
    if summary:
        plot_ablation_bars(
            paths["png"],
            [s["arm"] for s in summary],
            [s["test_mean"] * 100 for s in summary],
            [s["test_std"] * 100 for s in summary],
        )
    ok = [r for r in rows if not r.get("error") and "val_average" in r]
    if ok:
        best = max(ok, key=lambda r: r["val_average"])
        params = {"arm": best["arm"]} if best["arm"] in ABLATION_ARMS else {}
        params.update({k: v for k, v in best.items() if "." in k and not k.startswith(("test_", "val_"))})
        tree = to_dict(load_config(base + [f"{k}={_yaml(v)}" for k, v in trial_overrides(params).items()]))
        copy = " (a downloaded copy)" if "://" in sweep_uri else ""
        paths["best"].write_text(
            "# Best trial by validation average mAP; use: jobs/train.py config="
            + join(sweep_uri, "best.yaml")
            + copy
            + "\n"
            + yaml.safe_dump(tree, sort_keys=False)
        )
    return {k: p for k, p in paths.items() if p.exists()}


def markdown_table(rows: list[dict], summary: list[dict]) -> str:
    lines = ["| arm | seeds | test avg mAP (mean ± std) | val avg mAP (mean) |", "|---|---|---|---|"]
    for s in summary:
        lines.append(
            f"| {s['arm']} | {s['seeds']} | {s['test_mean'] * 100:.2f} ± {s['test_std'] * 100:.2f} | "
            f"{s['val_mean'] * 100:.2f} |"
        )
    thresholds = sorted({k[len("test_map@") :] for r in rows for k in r if k.startswith("test_map@")}, key=float)
    lines += [
        "",
        "| arm | seed | " + " | ".join(f"test @{t}" for t in thresholds) + " | test avg | val avg |",
        "|---|---|" + "---|" * (len(thresholds) + 2),
    ]
    for r in sorted(rows, key=lambda r: (str(r["arm"]), r.get("seed", 0))):
        cells = [f"{r.get(f'test_map@{t}', float('nan')) * 100:.2f}" for t in thresholds]
        lines.append(
            f"| {r['arm']} | {r.get('seed', '')} | "
            + " | ".join(cells)
            + f" | {r.get('test_average', float('nan')) * 100:.2f} | {r.get('val_average', float('nan')) * 100:.2f} |"
        )
    return "\n".join(lines) + "\n"
