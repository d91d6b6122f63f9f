"""Diagnose every finished trial of an ablation sweep and average the figures per arm."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .collector import Diagnostics
from .diagnose import diagnose_checkpoint


def diagnose_sweep(
    sweep_dirs: str | Path | Iterable[str | Path],
    split: str = "validation",
    max_videos: int = 200,
    plot: int = 0,
    overrides: Iterable[str] = (),
    progress: bool = True,
    table_path: str | Path | None = None,
) -> dict[str, dict[str, float]]:
    """Diagnose every finished trial of one or more ablation sweeps (from their results.csv) and average per arm
    over all of them (e.g. one sweep per seed).

    Writes <sweep>/diagnostics/<arm>_seed<k>/ per trial and the table (figures x arms, mean over seeds) to
    `table_path`, by default <sweep>/diagnostics.md of the first sweep; returns {arm: {figure: mean}}."""
    sweeps = [Path(sweep_dirs)] if isinstance(sweep_dirs, (str, Path)) else [Path(d) for d in sweep_dirs]
    trials = [trial for sweep_dir in sweeps for trial in _finished_trials(sweep_dir)]  # every table read first
    per_arm: dict[str, list[Diagnostics]] = {}
    for sweep_dir, row in trials:
        name = f"{row['arm'].replace('/', '_')}_seed{row.get('seed', 0)}"
        result = diagnose_checkpoint(
            str(sweep_dir / "trials" / row["trial_id"] / "export"),
            split=split,
            max_videos=max_videos,
            out_dir=str(sweep_dir / "diagnostics" / name),
            plot=plot,
            overrides=overrides,
            progress=progress,
        )
        per_arm.setdefault(row["arm"], []).append(result)
    means = {arm: _mean_figures(results) for arm, results in per_arm.items()}
    table = Path(table_path) if table_path else sweeps[0] / "diagnostics.md"
    table.parent.mkdir(parents=True, exist_ok=True)
    table.write_text(figures_markdown(means, split, max_videos))
    return means


def _finished_trials(sweep_dir: Path) -> list[tuple[Path, dict]]:
    """(sweep, results.csv row) for each trial of the sweep that finished without error."""
    table = sweep_dir / "results.csv"
    if not table.exists():
        raise FileNotFoundError(f"{table}: no results table (run or finish the sweep first)")
    with open(table, newline="") as handle:
        return [(sweep_dir, r) for r in csv.DictReader(handle) if not r.get("error") and r.get("trial_id")]


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
