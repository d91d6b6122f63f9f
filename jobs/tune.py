#!/usr/bin/env python
"""Ray Tune sweeps over CLASP: the SPEC 4 ablation arms (several seeds each) or a hyper-parameter search.

Each trial is a full Ray Train + DeepSpeed run (validation mAP per epoch, best checkpoint tested).
Rerunning the same command resumes an interrupted sweep without redoing finished trials.
Outputs in the sweep directory: results.csv, results.md, ablation.png, best.yaml (a preset for jobs/train.py).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clasp_dist.cli import config_from_args, init_ray  # noqa: E402
from clasp_dist.config import ConfigError  # noqa: E402

EXAMPLES = """examples:
  python jobs/tune.py --sweep ablation --seeds 3                        # all arms x 3 seeds, small profile
  python jobs/tune.py --sweep ablation --arms base,full --seeds 2 config=tiny
  python jobs/tune.py --sweep ablation --arms full --seeds 1 --grid optim.lr=1e-4,3e-4 config=tiny
  python jobs/tune.py --sweep hparams --samples 16 config=unav100_i3d data.root=s3://bucket/unav100 \\
      train.use_gpu=true train.num_workers=1
Search-space keys are the same dotted keys as jobs/train.py overrides."""


def build_parser() -> argparse.ArgumentParser:
    from clasp_dist.tuning import ABLATION_ARMS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=EXAMPLES + "\n\nablation arms: " + ", ".join(ABLATION_ARMS))
    parser.add_argument("--sweep", choices=["ablation", "hparams"], required=True)
    parser.add_argument("--seeds", type=int, default=3, help="seeds per ablation arm (default 3)")
    parser.add_argument("--arms", default="", help="comma list of ablation arms (default: all)")
    parser.add_argument("--samples", type=int, default=8, help="trials of the hparams search (default 8)")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                        help="extra grid dimension over a dotted config key (repeatable)")
    parser.add_argument("--num-cpus", type=int, default=None,
                        help="CPUs of the local Ray started when RAY_ADDRESS is unset (default: all)")
    parser.add_argument("--dir", default="", help="sweep directory (default: <run.output_dir>/sweeps/<sweep>)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="base config (config=PRESET, dotted keys)")
    return parser


def parse_grid(items: list[str]) -> dict:
    """`--grid optim.lr=1e-4,3e-4` -> {"optim.lr": [1e-4, 3e-4]} (values parsed like overrides)."""
    from clasp_dist.config.loader import parse_value

    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise ConfigError(f"--grid {item!r}: expected KEY=V1,V2,... (e.g. optim.lr=1e-4,3e-4)")
        grid[key.strip()] = [parse_value(v) for v in values.split(",")]
    return grid


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args.overrides)
    from clasp_dist.tuning import (absolute_base, build_space, result_rows, run_sweep, summarise_arms,
                                   validate_space, write_outputs)

    sweep_dir = Path(args.dir or Path(cfg.run.output_dir) / "sweeps" / args.sweep).resolve()
    arms = [a for a in args.arms.split(",") if a] or None
    base = absolute_base(list(args.overrides))
    try:  # every key, arm and value checked before Ray starts or any trial runs
        grid = parse_grid(args.grid)
        validate_space(base, build_space(args.sweep, args.seeds, arms, grid))
    except ConfigError as err:
        sys.exit(f"error: {err}")
    init_ray(args.num_cpus)
    grid_results = run_sweep(args.sweep, base, sweep_dir, samples=args.samples, seeds=args.seeds, arms=arms,
                             grid=grid)
    rows = result_rows(grid_results)
    paths = write_outputs(rows, sweep_dir, base)
    for s in summarise_arms(rows):
        print(f"{s['arm']:<22} test avg mAP {s['test_mean'] * 100:6.2f} ± {s['test_std'] * 100:5.2f} "
              f"({s['seeds']} seed(s))")
    print("\n".join(f"{k}: {v}" for k, v in paths.items() if v.exists()))
    failed = [r for r in rows if r.get("error")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
