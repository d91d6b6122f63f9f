"""`clasp diagnose`: what each CLASP module does on a trained model's own outputs (agreement, anchors, propagation)."""

from __future__ import annotations

import argparse
import logging
import sys

from .common import CommandError, add_overrides, check_before_ray, load_cfg

SUMMARY = "measure what each CLASP module does on a trained model's outputs (one run, or a sweep per arm)"

DESCRIPTION = """Measure what each CLASP module does on a trained model's own outputs (agreement, anchors, propagation).

On an evaluation split (never train), every step is an event, a one-stream distractor (semi-synthetic
data: regenerated from the manifest and checked against the shard features) or background, and the
tool reports: MEAE anchor-score means and ROC-AUCs per category, CSAI anchor precision and segment
coverage, the base vs refined localisation signal (step AP, event-vs-distractor AUC, segments whose
signal never reaches the decoder's lowest threshold) and video-level mAP. See clasp_dist/diagnostics/.

Outputs (--out DIR): diagnostics.json, alpha_by_category.png, timelines/<video>.png (--plot N); with --sweep,
diagnostics.md (default: in the first sweep folder)."""

EXAMPLES = """examples:
  clasp diagnose --checkpoint runs/default/export --out runs/default/diagnostics --plot 6
  clasp diagnose --checkpoint runs/default/export --split test --videos 100
  clasp diagnose --sweep runs/sweeps/ablation     # every trial, mean per arm -> diagnostics.md
  clasp diagnose --sweep runs/sweeps/seed0 --sweep runs/sweeps/seed1 --out runs/diag   # mean over both
The dataset is the checkpoint's own data.root (or the semi-synthetic dataset it was trained on) unless
data.root=ROOT says otherwise."""


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser("diagnose", help=SUMMARY, description=DESCRIPTION, epilog=EXAMPLES, config_sections=())
    add_overrides(parser, "model.window=8")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", metavar="CKPT", help="checkpoint or export directory of one run")
    what.add_argument(
        "--sweep",
        action="append",
        metavar="DIR",
        help="an ablation sweep folder (its results.csv); repeat it to average each arm's figures over several "
        "sweeps, e.g. one sweep per seed",
    )
    parser.add_argument(
        "--split", default="validation", choices=("validation", "test"), help="evaluation split (default: validation)"
    )
    parser.add_argument(
        "--videos", type=int, default=200, metavar="N", help="first N videos of the split (default 200)"
    )
    parser.add_argument("--out", metavar="DIR", help="output folder (see above)")
    parser.add_argument("--plot", type=int, default=0, metavar="N", help="timelines of the first N videos (default 0)")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.videos < 1:
        raise CommandError("--videos must be >= 1")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # here, not at the top: torch loads only after the arguments parse, so --help stays fast
    from ..diagnostics.diagnose import diagnose_checkpoint, format_figures
    from ..diagnostics.sweep import diagnose_sweep, figures_markdown

    progress = sys.stderr.isatty()
    if args.sweep:
        table = f"{args.out}/diagnostics.md" if args.out else None
        means = diagnose_sweep(
            args.sweep, args.split, args.videos, args.plot, args.overrides, progress=progress, table_path=table
        )
        print(figures_markdown(means, args.split, args.videos))
        return 0
    cfg = load_cfg(args.overrides)  # the dataset is data.root=ROOT when given, else the checkpoint's own
    check_before_ray(
        checkpoint=args.checkpoint, data=cfg.data.root or None, split=args.split, out_dir=args.out, storage=cfg.storage
    )
    result = diagnose_checkpoint(
        args.checkpoint, None, args.split, args.videos, args.out, args.plot, args.overrides, progress=progress
    )
    print(format_figures(result))
    if args.out:
        print(f"written to {args.out}")
    return 0
