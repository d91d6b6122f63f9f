#!/usr/bin/env python
"""Measure what each CLASP module does on a trained model's own outputs (agreement, anchors, propagation).

On an evaluation split (never train), every step is an event, a one-stream distractor (semi-synthetic
data: regenerated from the manifest and checked against the shard features) or background, and the
tool reports: MEAE anchor-score means and ROC-AUCs per category, CSAI anchor precision and segment
coverage, the base vs refined localisation signal (step AP, event-vs-distractor AUC, segments whose
signal never reaches the decoder's lowest threshold) and video-level mAP. See clasp_dist/diagnostics/.

Outputs (--out): diagnostics.json, alpha_by_category.png, timelines/<video>.png (--plot N).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

OVERRIDE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*=")
"""A `key=value` config override (dotted key), told apart from a sweep directory."""

EXAMPLES = """examples:
  python jobs/diagnose.py --checkpoint runs/default/export --out runs/default/diagnostics --plot 6
  python jobs/diagnose.py --checkpoint runs/default/export --split test --videos 100
  python jobs/diagnose.py --sweep runs/sweeps/ablation     # every trial, mean per arm -> diagnostics.md
  python jobs/diagnose.py --sweep runs/sweeps/seed0 runs/sweeps/seed1 --out runs/diag   # mean over both"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diagnose.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", metavar="CKPT", help="checkpoint or export directory of one run")
    what.add_argument(
        "--sweep",
        nargs="+",
        metavar="DIR",
        help="one or more ablation sweep directories (their results.csv); figures are averaged per arm over all "
        "of them, e.g. one sweep per seed",
    )
    parser.add_argument("--data", metavar="ROOT", help="dataset root (default: the checkpoint's data.root)")
    parser.add_argument(
        "--split",
        default="validation",
        choices=("validation", "test"),
        help="evaluation split to diagnose (default: validation)",
    )
    parser.add_argument(
        "--videos", type=int, default=200, metavar="N", help="first N videos of the split (default 200)"
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="output folder (checkpoint mode); with --sweep, where diagnostics.md goes (default: the first sweep)",
    )
    parser.add_argument("--plot", type=int, default=0, metavar="N", help="timelines of the first N videos (default 0)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (e.g. model.window=8)")
    return parser


def separate_overrides(args) -> None:
    """`--sweep a b model.window=8`: nargs="+" also took the overrides that follow the directories."""
    if args.sweep is None:
        return
    args.overrides = [d for d in args.sweep if OVERRIDE.match(d)] + args.overrides
    args.sweep = [d for d in args.sweep if not OVERRIDE.match(d)]
    if not args.sweep:
        sys.exit("error: --sweep needs at least one sweep directory")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    separate_overrides(args)
    if args.videos < 1:
        sys.exit("error: --videos must be >= 1")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # here, not at the top: torch loads only after the arguments parse, so --help stays fast
    from clasp_dist.checkpoint import CheckpointError
    from clasp_dist.data.errors import DataError

    try:
        return run(args)
    except (CheckpointError, DataError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def run(args) -> int:
    # imports here, not at the top: torch loads only after the arguments parse, so --help stays fast
    from clasp_dist.diagnostics.run import diagnose_checkpoint, format_figures
    from clasp_dist.diagnostics.sweep import diagnose_sweep, figures_markdown

    if args.sweep:
        table = os.path.join(args.out, "diagnostics.md") if args.out else None
        means = diagnose_sweep(
            args.sweep,
            args.split,
            args.videos,
            args.plot,
            args.overrides,
            progress=sys.stderr.isatty(),
            table_path=table,
        )
        print(figures_markdown(means, args.split, args.videos))
        return 0
    from clasp_dist.cli import check_before_ray

    check_before_ray(checkpoint=args.checkpoint, data=args.data, split=args.split, out_dir=args.out)
    result = diagnose_checkpoint(
        args.checkpoint,
        args.data,
        args.split,
        args.videos,
        args.out,
        args.plot,
        args.overrides,
        progress=sys.stderr.isatty(),
    )
    print(format_figures(result))
    if args.out:
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    from clasp_dist.input_errors import report_bad_input

    sys.exit(report_bad_input(main))
