"""Diagnose every finished trial of an ablation sweep and average the figures per arm."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Iterable

import numpy as np

from .collector import Diagnostics
from .run import diagnose_checkpoint


def diagnose_sweep(
    sweep_dir: str | Path,
    split: str = "validation",
    max_videos: int = 200,
    plot: int = 0,
    overrides: Iterable[str] = (),
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Diagnose every finished trial of an ablation sweep (from its results.csv) and average per arm.

    Writes <sweep>/diagnostics/<arm>_seed<k>/ per trial and <sweep>/diagnostics.md (figures x arms,
    mean over seeds); returns {arm: {figure: mean}}."""
    sweep_dir = Path(sweep_dir)
    table = sweep_dir / "results.csv"
    if not table.exists():
        raise FileNotFoundError(f"{table}: no results table (run or finish the sweep first)")
    with open(table, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if not r.get("error") and r.get("trial_id")]
    per_arm: dict[str, list[Diagnostics]] = {}
    for row in rows:
        export = sweep_dir / "trials" / row["trial_id"] / "export"
        name = f"{row['arm'].replace('/', '_')}_seed{row.get('seed', 0)}"
        result = diagnose_checkpoint(
            str(export),
            split=split,
            max_videos=max_videos,
            out_dir=str(sweep_dir / "diagnostics" / name),
            plot=plot,
            overrides=overrides,
            progress=progress,
        )
        per_arm.setdefault(row["arm"], []).append(result)
    means = {arm: _mean_figures(results) for arm, results in per_arm.items()}
    (sweep_dir / "diagnostics.md").write_text(figures_markdown(means, split, max_videos))
    return means


def _mean_figures(results: list[Diagnostics]) -> dict[str, float]:
    keys = dict.fromkeys(k for r in results for k in r.figures)
    return {
        k: float(np.nanmean([r.figures.get(k, float("nan")) for r in results]))
        if any(not math.isnan(r.figures.get(k, float("nan"))) for r in results)
        else float("nan")
        for k in keys
    }


def figures_markdown(means: dict[str, dict[str, float]], split: str, max_videos: int) -> str:
    """Figures (rows) x arms (columns), mean over seeds, as a Markdown table."""
    arms = list(means)
    keys = list(dict.fromkeys(k for figures in means.values() for k in figures))
    lines = [
        f"Model diagnostics on the first {max_videos} {split} videos (mean over seeds; n/a = module off).",
        "",
        "| figure | " + " | ".join(arms) + " |",
        "|---|" + "---|" * len(arms),
    ]
    for key in keys:
        cells = [means[a].get(key, float("nan")) for a in arms]
        lines.append(f"| {key} | " + " | ".join("n/a" if math.isnan(v) else f"{v:.3f}" for v in cells) + " |")
    return "\n".join(lines) + "\n"
