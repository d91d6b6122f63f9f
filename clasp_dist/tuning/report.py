"""A finished sweep's results: one row per trial, per-arm summaries, CSV/JSON/Markdown and the chart."""

from __future__ import annotations

import csv
import statistics
import tempfile
from pathlib import Path

import yaml

from ..config import load_config, to_dict
from ..data.filesystem import get_fs, is_url, join
from .spaces import ABLATION_ARMS, trial_overrides, yaml_literal


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
    if not is_url(sweep_uri):
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
        tree = to_dict(load_config(base + [f"{k}={yaml_literal(v)}" for k, v in trial_overrides(params).items()]))
        copy = " (a downloaded copy)" if is_url(sweep_uri) else ""
        paths["best"].write_text(
            "# Best trial by validation average mAP; use: clasp train config="
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
