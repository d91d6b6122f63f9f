#!/usr/bin/env python
"""CLASP's margin per data regime: full vs base and full vs the all-anchors control, per generator profile.

Reads the trial directories of one or more ablation sweeps (`<sweep>/trials/<trial>/config.yaml` and
`metrics.json`), so a sweep that was stopped early still counts every trial that finished. A trial's arm is
read from its config: the base model (`model.use_atp=false`), the all-anchors control (`model.global_ratio=1`,
no local anchors) or full CLASP (anything else with ATP on). Writes `regimes.json`, `regimes.md` (per regime:
each arm's seeds and mean ± std of test average mAP, the margins, whether every full seed beats every base
seed) and `regimes.png`. Trials that `clasp diagnose --sweep` has diagnosed (<sweep>/diagnostics/<arm>_seed<k>/)
add a table of their mean diagnostics per regime and arm. `--previous` keeps the trials of an earlier `regimes.json` whose trial directories
are gone (a trial found in a sweep wins over the same regime, arm and seed from there).

    ./dev bench/regimes.py runs/sweeps/regimes_seed0 runs/sweeps/regimes_seed1 --out docs/results/regimes
    ./dev bench/regimes.py runs/sweeps/regimes_* --previous docs/results/regimes/regimes.json --out docs/results/regimes
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clasp_dist.config import flatten  # noqa: E402
from clasp_dist.tuning import ABLATION_ARMS, ARM_KEYS, arm_settings  # noqa: E402
from clasp_dist.viz import plot_ablation_bars  # noqa: E402

ARMS = ("base", "control/all-anchors", "full")
"""The arms the margins compare; any other ablation arm found (e.g. full/thresholded) is listed beside them."""
REGIMES = ("small", "distract", "scarce")
BUDGET_KEYS = ("optim.lr", "train.epochs", "train.batch_size")
"""Keys that every trial of one regime must share: a mean over different budgets is not an arm's figure."""


DIAGNOSTICS = (
    ("heads.step_ap", "heads' step AP"),
    ("heads.event_vs_distractor_auc", "heads' event-vs-distractor AUC"),
    ("heads.segments_below_floor", "segments never reaching the floor"),
    ("heads.segment_coverage", "segment coverage"),
    ("heads.leak_outside", "leak outside"),
    ("meae.agreement_auc_event_vs_distractor", "agreement AUC, event vs distractor"),
    ("meae.agreement_auc_event_vs_labelled_distractor", "agreement AUC, event vs labelled-class distractor"),
    ("meae.alpha_auc_event_vs_distractor", "alpha AUC, event vs distractor"),
    ("csai.anchors_per_video", "anchors / video"),
    ("csai.anchor_precision", "anchor precision"),
    ("csai.anchors_on_distractors", "anchors on distractors"),
)
"""The `clasp diagnose` figures shown per regime and arm; `heads.*` is the decoding heads' figure (final.* when the
model has refined heads, else base.*)."""


class MixedBudgetError(ValueError):
    pass


def trial_arm(cfg: dict) -> str:
    """The ablation arm (clasp_dist.tuning.ABLATION_ARMS) whose settings of every arm-defining key match the
    trial's saved config; `other (key=value, ...)` when none does, so that no trial is counted as an arm it is not
    (full/thresholded was once counted as full)."""
    flat = flatten(cfg)
    got = {key: flat.get(key) for key in ARM_KEYS}
    for name in ABLATION_ARMS:
        if got == arm_settings(name):
            return name
    preset = arm_settings("full")
    return "other (" + ", ".join(f"{k}={v}" for k, v in got.items() if v != preset[k]) + ")"


def collect(sweeps: list[Path]) -> list[dict]:
    """One row per finished trial: regime, arm, seed, budget, test/val average mAP (%), trial directory."""
    rows = []
    for sweep in sweeps:
        for trial in sorted((sweep / "trials").glob("*")):
            metrics_path, cfg_path = trial / "metrics.json", trial / "config.yaml"
            if not (metrics_path.is_file() and cfg_path.is_file()):
                continue
            metrics, cfg = json.loads(metrics_path.read_text()), yaml.safe_load(cfg_path.read_text())
            if "test" not in metrics:
                continue
            flat, arm = flatten(cfg), trial_arm(cfg)
            rows.append(
                {
                    "regime": cfg["data"]["synth_profile"],
                    "arm": arm,
                    "seed": cfg["train"]["seed"],
                    "budget": {key: flat.get(key) for key in BUDGET_KEYS},
                    "test_average": 100 * metrics["test"]["average"],
                    "val_average": 100 * (metrics.get("validation", {}).get("average") or float("nan")),
                    "wall_time_s": metrics.get("wall_time_s"),
                    "trial": str(trial),
                    "diagnostics": trial_diagnostics(sweep, arm, cfg["train"]["seed"]),
                }
            )
    return rows


def trial_diagnostics(sweep: Path, arm: str, seed: int) -> dict | None:
    """The figures `clasp diagnose --sweep` wrote for this trial (<sweep>/diagnostics/<arm>_seed<k>/), if any,
    with `heads.*` added: the decoding heads' figures."""
    path = sweep / "diagnostics" / f"{arm.replace('/', '_')}_seed{seed}" / "diagnostics.json"
    if not path.is_file():
        return None
    figures = json.loads(path.read_text())["figures"]
    for key in [k for k in figures if k.startswith("base.")]:
        final = figures.get("final." + key[5:])
        figures["heads." + key[5:]] = figures[key] if final is None or final != final else final  # NaN: no refined
    return figures


def check_one_budget_per_regime(rows: list[dict]) -> None:
    """Refuse a regime whose trials ran different budgets (optim.lr, epochs, batch size), naming two of them.
    Rows from an earlier regimes.json that did not record their budget are not checked."""
    first: dict[str, dict] = {}
    for row in rows:
        if row.get("budget") is None:
            continue
        seen = first.setdefault(row["regime"], row)
        if row["budget"] != seen["budget"]:
            raise MixedBudgetError(
                f"regime {row['regime']!r} mixes budgets: {seen['budget']} ({seen['trial']}) and "
                f"{row['budget']} ({row['trial']}); pass the sweeps of one budget"
            )


def merge_previous(rows: list[dict], previous: list[dict]) -> list[dict]:
    """`rows` plus the earlier trials whose (regime, arm, seed) no finished trial in `rows` has."""
    key = lambda r: (r["regime"], r["arm"], r["seed"])  # noqa: E731
    have = {key(r) for r in rows}
    return rows + [r for r in previous if key(r) not in have]


def paired_margin(a: dict, b: dict) -> dict | None:
    """Mean of a − b over the seeds both arms finished ({seeds, mean}), None when they share none: arms whose
    seeds differ are not compared by their means alone."""
    b_by_seed = dict(zip(b["seeds"], b["tests"]))
    diffs = {s: t - b_by_seed[s] for s, t in zip(a["seeds"], a["tests"]) if s in b_by_seed}
    return {"seeds": sorted(diffs), "mean": statistics.fmean(diffs.values())} if diffs else None


def summarise(rows: list[dict]) -> dict:
    """{regime: {arm: {seeds, tests, mean, std}, margins}} over whatever finished."""
    out = {}
    for regime in sorted(
        {r["regime"] for r in rows}, key=lambda x: (x not in REGIMES, REGIMES.index(x) if x in REGIMES else 0, x)
    ):
        arms = {}
        found = {r["arm"] for r in rows if r["regime"] == regime}
        for arm in [*ARMS, *sorted(found - set(ARMS))]:
            got = sorted((r for r in rows if r["regime"] == regime and r["arm"] == arm), key=lambda r: r["seed"])
            if got:
                tests = [r["test_average"] for r in got]
                arms[arm] = {
                    "seeds": [r["seed"] for r in got],
                    "tests": tests,
                    "mean": statistics.fmean(tests),
                    "std": statistics.stdev(tests) if len(tests) > 1 else 0.0,
                    "diagnostics": mean_diagnostics(got),
                }
        entry = {
            "arms": arms,
            "budget": next((r["budget"] for r in rows if r["regime"] == regime and r.get("budget")), None),
        }
        if "full" in arms and "base" in arms:
            entry["full_minus_base"] = arms["full"]["mean"] - arms["base"]["mean"]
            entry["full_minus_base_paired"] = paired_margin(arms["full"], arms["base"])
            entry["every_full_seed_beats_every_base_seed"] = min(arms["full"]["tests"]) > max(arms["base"]["tests"])
        if "full" in arms and "control/all-anchors" in arms:
            entry["full_minus_control"] = arms["full"]["mean"] - arms["control/all-anchors"]["mean"]
            entry["full_minus_control_paired"] = paired_margin(arms["full"], arms["control/all-anchors"])
        out[regime] = entry
    return out


def mean_diagnostics(rows: list[dict]) -> dict | None:
    """{figure: mean over the arm's diagnosed seeds, "seeds": [...]} for the DIAGNOSTICS figures; None if none."""
    diagnosed = [r for r in rows if r.get("diagnostics")]
    if not diagnosed:
        return None
    out: dict = {"seeds": [r["seed"] for r in diagnosed]}
    for key, _ in DIAGNOSTICS:
        values = [r["diagnostics"].get(key) for r in diagnosed]
        values = [v for v in values if v is not None and v == v]  # missing or NaN: module off, or no such steps
        out[key] = statistics.fmean(values) if values else None
    return out


def diagnostics_markdown(summary: dict) -> list[str]:
    """Per regime and arm, the mean DIAGNOSTICS figures (first 200 validation videos of each diagnosed trial)."""
    rows = [(regime, arm, a["diagnostics"]) for regime, e in summary.items() for arm, a in e["arms"].items()]
    rows = [r for r in rows if r[2]]
    if not rows:
        return []
    lines = [
        "",
        "Diagnostics (`clasp diagnose`, validation; mean over the diagnosed seeds):",
        "",
        "| regime | arm | seeds | " + " | ".join(label for _, label in DIAGNOSTICS) + " |",
        "|---|---|---|" + "---|" * len(DIAGNOSTICS),
    ]
    for regime, arm, d in rows:
        cells = ["-" if d[key] is None else f"{d[key]:.3f}" for key, _ in DIAGNOSTICS]
        seeds = ", ".join(f"s{s}" for s in d["seeds"])
        lines.append(f"| {regime} | {arm} | {seeds} | " + " | ".join(cells) + " |")
    return lines


def margin_cells(entry: dict, key: str) -> str:
    """'+m.mm | +p.pp (s0, s1)': the difference of the means, then the paired one over the shared seeds."""
    means, paired = entry.get(key), entry.get(f"{key}_paired")
    same = "-" if paired is None else f"{paired['mean']:+.2f} ({', '.join(f's{s}' for s in paired['seeds'])})"
    return f"{'-' if means is None else f'{means:+.2f}'} | {same}"


def markdown(summary: dict) -> str:
    lines = ["| regime | arm | seeds | test avg mAP per seed | mean ± std |", "|---|---|---|---|---|"]
    for regime, entry in summary.items():
        for arm, a in entry["arms"].items():
            per_seed = ", ".join(f"s{s}: {t:.2f}" for s, t in zip(a["seeds"], a["tests"]))
            lines.append(f"| {regime} | {arm} | {len(a['seeds'])} | {per_seed} | {a['mean']:.2f} ± {a['std']:.2f} |")
    budgets = [
        f"{regime}: " + ", ".join(f"{k}={v}" for k, v in entry["budget"].items())
        for regime, entry in summary.items()
        if entry.get("budget")
    ]
    if budgets:
        lines += ["", "Budget per regime: " + "; ".join(budgets) + "."]
    lines += [
        "",
        "| regime | full − base (means) | same seeds | full − control (means) | same seeds | "
        "every full seed > every base seed |",
        "|---|---|---|---|---|---|",
    ]
    for regime, entry in summary.items():
        every = entry.get("every_full_seed_beats_every_base_seed")
        cells = [margin_cells(entry, "full_minus_base"), margin_cells(entry, "full_minus_control")]
        lines.append(f"| {regime} | {' | '.join(cells)} | {'-' if every is None else ('yes' if every else 'no')} |")
    lines += diagnostics_markdown(summary)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path, help="ablation sweep directories (with trials/)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--previous",
        type=Path,
        action="append",
        default=[],
        metavar="JSON",
        help="an earlier regimes.json: keep its trials that no sweep here has (repeatable)",
    )
    args = parser.parse_args(argv)
    rows = collect(args.sweeps)
    for path in args.previous:
        rows = merge_previous(rows, json.loads(path.read_text())["trials"])
    try:
        check_one_budget_per_regime(rows)
    except MixedBudgetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not rows:
        print(f"no finished trial under {', '.join(map(str, args.sweeps))}", file=sys.stderr)
        return 1
    summary = summarise(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "regimes.json").write_text(json.dumps({"trials": rows, "summary": summary}, indent=2))
    (args.out / "regimes.md").write_text(markdown(summary))
    bars = [(f"{regime}\n{arm}", a["mean"], a["std"]) for regime, e in summary.items() for arm, a in e["arms"].items()]
    plot_ablation_bars(
        args.out / "regimes.png",
        [b[0] for b in bars],
        [b[1] for b in bars],
        [b[2] for b in bars],
        title="test average mAP per regime and arm (mean ± std over seeds)",
    )
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
