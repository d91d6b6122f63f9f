"""Search spaces of a sweep: the ablation arms, the hyper-parameter space and their validation."""

from __future__ import annotations

import functools
from typing import Any

import yaml

from ..config import ConfigError, apply_overrides, flatten, load_config, to_dict

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
    "full/unimodal": {"model.meae_evidence": "unimodal"},
    "full/unimodal-confidence": {"model.meae_evidence": "unimodal", "model.meae_confidence": "unimodal"},
}
"""The ablation arms (docs/model.md#ablation-arms-as-overrides); `full` is the preset's CLASP (global + local anchors, MLP fusion, attention).
`control/all-anchors` makes every valid step an anchor (top ceil(T/1)): the same ATP layer and refined
heads with no anchor selection, which separates what the anchors add from what the extra layer adds.
`full/unimodal` computes MEAE's agreement from heads on the encoder's features before the cross-modal block
(`-confidence`: its confidence too)."""

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
        load_config(base + [f"{k}={yaml_literal(v)}" for k, v in ABLATION_ARMS[arm].items()])
    for key in keys:
        for value in _values(space[key]):
            try:
                load_config(base + [f"{key}={yaml_literal(value)}"])
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


def yaml_literal(value: Any) -> str:
    """A value as the YAML text of a dotted `key=value` override."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
