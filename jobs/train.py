#!/usr/bin/env python
"""Train CLASP with Ray Train + DeepSpeed, pick the best checkpoint on validation, report test mAP.

With no arguments: the embedded default (semi-synthetic UnAV-100, `small` profile, generated once and
cached; local Ray; CPU). Works the same under `ray job submit -- python jobs/train.py ...`.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clasp_dist.cli import check_before_ray, config_from_args, init_ray, override_parser  # noqa: E402
from clasp_dist.quiet_logs import show_data_error_tracebacks  # noqa: E402

EXAMPLES = """examples:
  python jobs/train.py                                   # embedded default, CPU, ~10 min on 2 cores
  python jobs/train.py config=tiny train.epochs=1        # smoke run
  python jobs/train.py config=unav100_i3d data.root=s3://bucket/unav100_i3d \\
      train.num_workers=8 train.use_gpu=true deepspeed.bf16=true deepspeed.zero_stage=2
  python jobs/train.py model.use_meae=false model.use_atp=false run.name=base   # the base model
Rerunning with the same run.name (and run.storage_path) resumes from the last checkpoint; the config must be
the run's (a new run.name for other settings, run.resume_changes=[train.epochs] for a safe change)."""


def main(argv: list[str] | None = None) -> int:
    parser = override_parser(__doc__.strip().splitlines()[0], EXAMPLES, argv)
    parser.add_argument("--debug", action="store_true", help="on a data error, print the full traceback too")
    args = parser.parse_args(argv)
    cfg = config_from_args(args.overrides)
    if args.debug:
        show_data_error_tracebacks()  # Ray's workers' copies of a data error's traceback too
    check_before_ray(data=cfg.data.root or None, storage=cfg.storage)
    init_ray()
    # here, not at the top: torch and the data package load after the config, so --help stays fast
    from clasp_dist.data.errors import DataError
    from clasp_dist.config import ConfigError
    from clasp_dist.run_identity import RunIdentityError
    from clasp_dist.trainer import TrainingDataError, UnsatisfiableRequestError, run_training

    try:
        summary = run_training(cfg)
    except (DataError, TrainingDataError) as err:  # bad data: deterministic, one line (shard, sample, field)
        if args.debug:
            raise
        import ray

        ray.shutdown()  # flush Ray's forwarded worker logs first, so that the cause is the last line
        print(f"error: {str(err).splitlines()[0]} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1
    except (RunIdentityError, UnsatisfiableRequestError, ConfigError) as err:  # refused before anything ran
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"test average mAP {summary.metrics['test']['average'] * 100:.2f} | run directory: {summary.run_dir}")
    return 0


if __name__ == "__main__":
    from clasp_dist.input_errors import report_bad_input

    sys.exit(report_bad_input(main))
