"""`clasp tune`: Ray Tune sweeps (the ablation arms over seeds, or a hyper-parameter search)."""

from __future__ import annotations

import argparse

from .common import EXIT_OK, EXIT_PROBLEMS, CommandError, add_overrides, load_cfg

SUMMARY = "Ray Tune sweeps: the ablation arms (several seeds each) or a hyper-parameter search"

DESCRIPTION = """Ray Tune sweeps over CLASP: the ablation arms (several seeds each) or a hyper-parameter search.

Each trial is a full Ray Train + DeepSpeed run (validation mAP per epoch, best checkpoint tested).
Rerunning the same command (or `--resume --out DIR`) continues an interrupted sweep without redoing finished
trials; a sweep's identity is its search space and base config, and a folder holds one sweep only.
Outputs in the sweep folder: results.csv, results.md, ablation.png, best.yaml (a preset for `clasp train`)."""

EXAMPLES = """examples:
  clasp tune --sweep ablation --seeds 3                          # all arms x 3 seeds, small profile
  clasp tune --sweep ablation --arms base,full --seeds 2 config=tiny
  clasp tune --sweep ablation --arms full --seeds 1 --grid optim.lr=1e-4,3e-4 config=tiny
  clasp tune --sweep hparams --samples 16 config=unav100_i3d data.root=s3://bucket/unav100 \\
      run.storage_path=s3://bucket/runs train.use_gpu=true train.num_workers=1
  clasp tune --resume --out s3://bucket/runs/sweeps/hparams-0123456789ab   # after the driver died
A sweep's folder is <run.storage_path>/sweeps/<sweep>-<identity> (identity: search space + base config), or --out.
Rerunning the same sweep continues it; a different sweep in a folder that holds one is refused.
Search-space keys are the same dotted keys as the overrides; exit status 1 when a trial failed."""


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "tune",
        help=SUMMARY,
        description=DESCRIPTION,
        epilog=EXAMPLES,
        help_tail=ablation_arms,
        config_sections=(),
    )
    add_overrides(parser, "config=tiny")
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
        "--out",
        default="",
        metavar="DIR",
        help="sweep folder, local, s3:// or gs:// (default: <run.storage_path>/sweeps/<sweep>-<identity>)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the sweep recorded in --out (its search space and base config come from there)",
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
    parser.set_defaults(run=run)
    return parser


def ablation_arms() -> str:
    from ..tuning import ABLATION_ARMS

    return "ablation arms: " + ", ".join(ABLATION_ARMS)


def parse_grid(items: list[str]) -> dict:
    """`--grid optim.lr=1e-4,3e-4` -> {"optim.lr": [1e-4, 3e-4]} (values parsed like overrides)."""
    from ..config.loader import parse_value

    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise CommandError(f"--grid {item!r}: expected KEY=V1,V2,... (e.g. optim.lr=1e-4,3e-4)")
        grid[key.strip()] = [parse_value(v) for v in values.split(",")]
    return grid


def sweep_spec(args: argparse.Namespace):
    """The sweep the command line describes (None for a bare `--resume`); a bad key, arm or value fails here,
    before Ray starts or any trial runs."""
    from ..tuning import SweepSpec, absolute_base, validate_space

    if args.sweep is None:
        if not args.resume or args.overrides or args.arms or args.grid:
            raise CommandError("--sweep is required (or --resume --out DIR alone, to continue the sweep stored there)")
        return None
    load_cfg(args.overrides)
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
    from ..data.filesystem import absolute_location, is_url

    return path.rstrip("/") if is_url(path) else absolute_location(path)


def run(args: argparse.Namespace) -> int:
    from ..tuning import claim_sweep_dir, default_sweep_dir, result_rows, run_sweep, summarise_arms, write_outputs
    from .ray_start import init_ray

    if args.resume and not args.out:
        raise CommandError("--resume needs --out (the sweep folder printed when it started)")
    spec = sweep_spec(args)
    sweep_uri = sweep_folder(args.out) if args.out else default_sweep_dir(spec)
    spec = claim_sweep_dir(spec, sweep_uri, args.resume, load_cfg(spec.base if spec else []).storage)
    print(f"[clasp-dist] sweep {spec.identity()} in {sweep_uri}", flush=True)
    init_ray(args.num_cpus)
    grid_results = run_sweep(spec, sweep_uri, max_concurrent=args.max_concurrent, cluster_yaml=args.cluster_config)
    rows = result_rows(grid_results)
    paths = write_outputs(rows, sweep_uri, spec.base, load_cfg(spec.base).storage)
    for s in summarise_arms(rows):
        print(
            f"{s['arm']:<22} test avg mAP {s['test_mean'] * 100:6.2f} ± {s['test_std'] * 100:5.2f} "
            f"({s['seeds']} seed(s))"
        )
    print("\n".join(f"{k}: {v}" for k, v in paths.items()))
    return EXIT_PROBLEMS if any(r.get("error") for r in rows) else EXIT_OK
