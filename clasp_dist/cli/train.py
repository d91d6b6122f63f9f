"""`clasp train`: Ray Train + DeepSpeed, the best checkpoint on validation, test mAP."""

from __future__ import annotations

import argparse
import sys

from .common import CommandError, add_overrides, check_before_ray, load_cfg

SUMMARY = "train CLASP (Ray Train + DeepSpeed), pick the best checkpoint on validation, report test mAP"

DESCRIPTION = """Train CLASP with Ray Train + DeepSpeed, pick the best checkpoint on validation, report test mAP.

With no arguments: the embedded default (semi-synthetic UnAV-100, `small` profile, generated once and
cached; local Ray; CPU). Works the same under `ray job submit -- python jobs/train.py ...`."""

EXAMPLES = """examples:
  clasp train                                            # embedded default, CPU, ~10 min on 2 cores
  clasp train config=tiny train.epochs=1                 # smoke run
  clasp train config=unav100_i3d data.root=s3://bucket/unav100_i3d \\
      train.num_workers=8 train.use_gpu=true deepspeed.bf16=true deepspeed.zero_stage=2
  clasp train model.use_meae=false model.use_atp=false run.name=base   # the base model
  clasp train config=unav100_i3d train.use_gpu=true train.num_workers=64 --dry-run   # the plan only, no Ray
Rerunning with the same run.name (and run.storage_path) resumes from the last checkpoint; the config must be
the run's (a new run.name for other settings, run.resume_changes=[train.epochs] for a safe change)."""


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser("train", help=SUMMARY, description=DESCRIPTION, epilog=EXAMPLES, config_sections=())
    add_overrides(parser)
    parser.add_argument("--debug", action="store_true", help="on a data error, print the full traceback too")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved batch plan, learning rate and resource request, and exit (no Ray, no training)",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    cfg = load_cfg(args.overrides)
    if args.dry_run:
        return print_run_plan(cfg)
    from ..quiet_logs import show_data_error_tracebacks

    if args.debug:
        show_data_error_tracebacks()  # Ray's workers' copies of a data error's traceback too
    check_before_ray(data=cfg.data.root or None, storage=cfg.storage)
    from .ray_start import init_ray

    init_ray()
    # here, not at the top: torch and the data package load after the config, so --help stays fast
    from ..data.errors import DataError
    from ..training.driver import TrainingDataError, run_training

    try:
        summary = run_training(cfg)
    except (DataError, TrainingDataError) as err:  # bad data: deterministic, one line (shard, sample, field)
        if args.debug:
            raise
        import ray

        ray.shutdown()  # flush Ray's forwarded worker logs first, so that the cause is the last line
        raise CommandError(f"{str(err).splitlines()[0]} (rerun with --debug for the traceback)") from err
    print(f"test average mAP {summary.metrics['test']['average'] * 100:.2f} | run directory: {summary.run_dir}")
    sys.stdout.flush()
    return 0


def print_run_plan(cfg) -> int:
    """The batch plan, learning rate and resource request of `cfg`, printed; no Ray is started."""
    from ..run_plan import format_run_plan, plan_run

    try:
        plan = plan_run(cfg)
    except ValueError as err:  # batch arithmetic that does not work out for this worker count
        raise CommandError(str(err)) from err
    print(format_run_plan(cfg, plan))
    return 0
