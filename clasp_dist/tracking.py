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
