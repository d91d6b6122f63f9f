"""A sweep's identity: what it is (kind, search space, base config) and the folder that holds it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..config import ConfigError, flatten, load_config, to_dict
from ..data.filesystem import absolute_location, get_fs, is_url, join
from .spaces import build_space


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep is: its kind, its search-space arguments and its base config."""

    sweep: str
    """ablation or hparams."""
    base: list[str]
    """Base config overrides (`config=PRESET`, dotted keys), local paths made absolute."""
    seeds: int = 3
    """Seeds per ablation arm."""
    arms: list[str] | None = None
    """Ablation arms (None = all)."""
    samples: int = 8
    """Trials of the hparams search."""
    grid: dict = field(default_factory=dict)
    """Extra grid dimensions {dotted key: [values]}."""

    def space(self) -> dict:
        return build_space(self.sweep, self.seeds, self.arms, self.grid)

    def described(self) -> dict:
        """The identity's content: the search space (as values) and the resolved base config, less `run.*`
        (each trial sets its own name and paths), `tracking.*` and the progress bar."""
        space = {key: _describe(spec) for key, spec in self.space().items()}
        if self.sweep == "hparams":
            space["num_samples"] = self.samples
        tree = to_dict(load_config(self.base))
        tree.pop("run", None)
        tree.pop("tracking", None)
        tree["train"].pop("progress_bar", None)
        return {"sweep": self.sweep, "space": space, "config": tree}

    def identity(self) -> str:
        text = json.dumps(self.described(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def record(self) -> dict:
        return {"identity": self.identity(), **asdict(self), "described": self.described()}

    @classmethod
    def from_record(cls, record: dict) -> SweepSpec:
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
    root = absolute_location(load_config(spec.base).run.storage_path)
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
                "(an older clasp-dist wrote it); give this sweep another --out"
            )
        if not is_url(sweep_uri):
            fs.makedirs(base, exist_ok=True)
        with fs.open(join(base, SWEEP_RECORD), "wb") as handle:
            handle.write(json.dumps(spec.record(), indent=1, sort_keys=True).encode())
        return spec
    if spec is None or spec.identity() == record["identity"]:
        return SweepSpec.from_record(record)
    differs = describe_difference(record["described"], spec.described())
    raise SweepIdentityError(
        f"{sweep_uri} holds another sweep (identity {record['identity']}; this one is {spec.identity()}). They differ "
        f"in {'; '.join(differs[:8])}{' ...' if len(differs) > 8 else ''}. Give this sweep another --out, or none "
        f"(each sweep then gets <run.storage_path>/sweeps/<sweep>-<identity>), or continue the stored sweep with "
        f"`clasp tune --resume --out {sweep_uri}`"
    )


def describe_difference(old: dict, new: dict) -> list[str]:
    """'key (old -> new)' for `sweep`, each `space.<key>` and each config key whose value differs."""

    def flat(d: dict) -> dict:
        return {"sweep": d["sweep"], **flatten({"space": d["space"]}), **flatten(d["config"])}

    a, b = flat(old), flat(new)
    return [f"{k} ({a.get(k, '-')!r} -> {b.get(k, '-')!r})" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
