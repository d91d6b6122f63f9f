#!/usr/bin/env python
"""Ray Tune sweeps over CLASP: the SPEC 4 ablation arms (several seeds each) or a hyper-parameter search.

Each trial is a full Ray Train + DeepSpeed run (validation mAP per epoch, best checkpoint tested).
Rerunning the same command (or `--resume --dir DIR`) continues an interrupted sweep without redoing finished
trials; a sweep's identity is its search space and base config, and a folder holds one sweep only.
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
from clasp_dist.config.loader import parse_value  # noqa: E402
from clasp_dist.tuning import (
    ABLATION_ARMS,
    SweepSpec,
    absolute_base,
    claim_sweep_dir,
    default_sweep_dir,  # noqa: E402
    result_rows,
    run_sweep,
    summarise_arms,
    validate_space,
    write_outputs,
)

EXAMPLES = """examples:
  python jobs/tune.py --sweep ablation --seeds 3                        # all arms x 3 seeds, small profile
  python jobs/tune.py --sweep ablation --arms base,full --seeds 2 config=tiny
  python jobs/tune.py --sweep ablation --arms full --seeds 1 --grid optim.lr=1e-4,3e-4 config=tiny
  python jobs/tune.py --sweep hparams --samples 16 config=unav100_i3d data.root=s3://bucket/unav100 \\
      run.storage_path=s3://bucket/runs train.use_gpu=true train.num_workers=1
  python jobs/tune.py --resume --dir s3://bucket/runs/sweeps/hparams-0123456789ab   # after the driver died
A sweep's folder is <run.storage_path>/sweeps/<sweep>-<identity> (identity: search space + base config), or --dir.
Rerunning the same sweep continues it; a different sweep in a folder that holds one is refused.
Search-space keys are the same dotted keys as jobs/train.py overrides."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES + "\n\nablation arms: " + ", ".join(ABLATION_ARMS),
    )
    parser.add_argument("--sweep", choices=["ablation", "hparams"], help="the sweep (required unless --resume)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per ablation arm (default 3)")
    parser.add_argument("--arms", default="", help="comma list of ablation arms (default: all)")
    parser.add_argument("--samples", type=int, default=8, help="trials of the hparams search (default 8)")
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="extra grid dimension over a dotted config key (repeatable)",
    )
    parser.add_argument(
        "--num-cpus",
        type=int,
        default=None,
        help="CPUs of the local Ray started when RAY_ADDRESS is unset (default: all)",
    )
    parser.add_argument(
        "--dir", default="", help="sweep folder, local or s3:// (default: <run.storage_path>/sweeps/<sweep>-<identity>)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the sweep recorded in --dir (its search space and base config come from there)",
    )
    parser.add_argument(
        "--max-concurrent",
        type=int,
        default=None,
        metavar="N",
        help="trials at once (default: as many as the cluster can grow to hold)",
    )
    parser.add_argument(
        "--cluster-config",
        default=None,
        metavar="YAML",
        help="size the concurrency from this `ray up` YAML's node types when the autoscaler does not report its own",
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="base config (config=PRESET, dotted keys)")
    return parser


def parse_grid(items: list[str]) -> dict:
    """`--grid optim.lr=1e-4,3e-4` -> {"optim.lr": [1e-4, 3e-4]} (values parsed like overrides)."""
    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise ConfigError(f"--grid {item!r}: expected KEY=V1,V2,... (e.g. optim.lr=1e-4,3e-4)")
        grid[key.strip()] = [parse_value(v) for v in values.split(",")]
    return grid


def sweep_spec(args) -> SweepSpec | None:
    """The sweep the command line describes (None for a bare `--resume`); exits on a bad key, arm or value
    before Ray starts or any trial runs."""
    if args.sweep is None:
        if not args.resume or args.overrides or args.arms or args.grid:
            sys.exit("error: --sweep is required (or --resume --dir DIR alone, to continue the sweep stored there)")
        return None
    config_from_args(args.overrides)
    spec = SweepSpec(
        args.sweep,
        absolute_base(list(args.overrides)),
        seeds=args.seeds,
        arms=[a for a in args.arms.split(",") if a] or None,
        samples=args.samples,
        grid=parse_grid(args.grid),
    )
    validate_space(spec.base, spec.space())
    return spec


def sweep_folder(path: str) -> str:
    return path.rstrip("/") if "://" in path else str(Path(path).resolve())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.resume and not args.dir:
        sys.exit("error: --resume needs --dir (the sweep folder printed when it started)")
    try:
        spec = sweep_spec(args)
        sweep_uri = sweep_folder(args.dir) if args.dir else default_sweep_dir(spec)
        storage = config_from_args(spec.base if spec else []).storage
        spec = claim_sweep_dir(spec, sweep_uri, args.resume, storage)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    print(f"[clasp-dist] sweep {spec.identity()} in {sweep_uri}", flush=True)
    init_ray(args.num_cpus)
    grid_results = run_sweep(spec, sweep_uri, max_concurrent=args.max_concurrent, cluster_yaml=args.cluster_config)
    rows = result_rows(grid_results)
    paths = write_outputs(rows, sweep_uri, spec.base, config_from_args(spec.base).storage)
    for s in summarise_arms(rows):
        print(
            f"{s['arm']:<22} test avg mAP {s['test_mean'] * 100:6.2f} ± {s['test_std'] * 100:5.2f} "
            f"({s['seeds']} seed(s))"
        )
    print("\n".join(f"{k}: {v}" for k, v in paths.items()))
    failed = [r for r in rows if r.get("error")]
    return 1 if failed else 0


if __name__ == "__main__":
    from clasp_dist.input_errors import report_bad_input

    sys.exit(report_bad_input(main))
