#!/usr/bin/env python
"""Evaluate temporal detections with ActivityNet-style segment mAP (UnAV-100 / ActivityNet 1.3).

Two modes:

  files       python jobs/evaluate.py --predictions P.json --ground-truth GT.json [--split test]
                  [--tiou 0.1:0.9:0.1] [--json-out M.json]
  checkpoint  python jobs/evaluate.py --checkpoint CKPT [--data ROOT] [--split test] [--out DIR]
                  [--plot N] [key=value ...]      (runs the model with the distributed evaluator)
"""
from __future__ import annotations

import argparse
import logging
import sys

EXAMPLES = """examples:
  # score an ActivityNet results JSON against the UnAV-100 test split (thresholds 0.1:0.1:0.9)
  python jobs/evaluate.py --predictions runs/x/test_predictions.json \\
      --ground-truth clasp_dist/resources/unav100_annotations.json --split test --json-out metrics.json
  # ActivityNet 1.3 validation (200 classes -> 0.5:0.05:0.95 by default)
  python jobs/evaluate.py --predictions anet_results.json --ground-truth anet13.json --split validation
  # custom thresholds
  python jobs/evaluate.py --predictions P.json --ground-truth GT.json --tiou 0.3,0.5,0.7
  # evaluate a checkpoint on sharded data (Ray actor pool; config overrides as key=value)
  python jobs/evaluate.py --checkpoint runs/x/best --data s3://bucket/unav100 --split test --out runs/x/eval --plot 8

conventions: mAP and recall are fractions (0..1) in --json-out and percentages in the printed table.
Predictions on videos missing from the ground truth are ignored (counted); predictions of a class
without ground truth in the split are ignored (counted); only the top 100 predictions per video by
score are scored (the rest counted); a label name outside the class list is an error."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evaluate.py", description=__doc__.split("\n\n")[0], epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    files = parser.add_argument_group("files mode (score a results JSON)")
    files.add_argument("--predictions", metavar="P.json",
                       help="ActivityNet results JSON {'results': {vid: [{'segment', 'label', 'score'}]}} "
                            "(local path or s3:// URL); labels are class names or integer ids")
    files.add_argument("--ground-truth", metavar="GT.json",
                       help="ActivityNet/UnAV annotation JSON {'database': {vid: {'subset', 'duration', 'annotations'}}}")
    files.add_argument("--json-out", metavar="M.json",
                       help="write the metrics JSON {'0.1': mAP, ..., 'average', 'recall@1x', 'recall@5x'} (fractions)")
    files.add_argument("--max-per-video", type=int, default=100, metavar="N",
                       help="score only the top N predictions of each video by score (default: 100, the protocol)")
    files.add_argument("--tie-break", choices=("stable", "official"), default="stable",
                       help="order of equal scores / equal tIoU: 'stable' = input order (default, deterministic); "
                            "'official' = the official script's np.argsort(...)[::-1] calls (numpy-build dependent)")

    ckpt = parser.add_argument_group("checkpoint mode (run a trained model, distributed)")
    ckpt.add_argument("--checkpoint", metavar="CKPT", help="checkpoint directory (local or s3://)")
    ckpt.add_argument("--data", metavar="ROOT", help="dataset root holding manifest.json and shards (default: the "
                      "checkpoint's data.root, or the semi-synthetic dataset it was trained on, from the cache)")
    ckpt.add_argument("--out", metavar="DIR", help="output folder: predictions JSON, metrics JSON, plots")
    ckpt.add_argument("--plot", type=int, default=0, metavar="N", help="draw timelines of N videos (default: 0)")
    ckpt.add_argument("overrides", nargs="*", metavar="key=value",
                      help="config overrides for the checkpoint mode (e.g. eval.num_actors=4)")

    common = parser.add_argument_group("both modes")
    common.add_argument("--split", default="test",
                        help="split to score: train/validation/test (ActivityNet's training/testing accepted); default test")
    common.add_argument("--tiou", metavar="SPEC",
                        help="tIoU thresholds: START:STOP:STEP with STOP inclusive (0.5:0.95:0.05 gives 10 values) "
                             "or a comma list 0.3,0.5,0.7. Default: the dataset's protocol, ActivityNet 1.3 "
                             "0.5:0.05:0.95 (200 classes or training/testing subsets), else UnAV-100 0.1:0.1:0.9")
    common.add_argument("--quiet", action="store_true", help="print only the table (no counted warnings)")
    return parser


def check_mode(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """'files' or 'checkpoint'; a clear usage error when the two are mixed or half given."""
    file_args = [n for n in ("predictions", "ground_truth", "json_out") if getattr(args, n)]
    ckpt_args = [n for n in ("checkpoint", "data", "out") if getattr(args, n)] + (["plot"] if args.plot else [])
    if args.checkpoint or args.data:
        if file_args:
            parser.error(f"--checkpoint/--data cannot be combined with --{file_args[0].replace('_', '-')}")
        if not args.checkpoint:
            parser.error("--data belongs to the checkpoint mode: add --checkpoint CKPT")
        return "checkpoint"
    if ckpt_args or args.overrides:
        parser.error("--out, --plot and key=value overrides belong to the checkpoint mode (--checkpoint, --data)")
    if not (args.predictions and args.ground_truth):
        parser.error("give --predictions and --ground-truth (files mode), or --checkpoint [--data] (checkpoint mode)")
    return "files"


def run_files_mode(args: argparse.Namespace) -> int:
    from clasp_dist.evaluation.formats import load_ground_truth, load_predictions, protocol_thresholds
    from clasp_dist.evaluation.metric import evaluate_detection, parse_tiou_thresholds
    from clasp_dist.evaluation.report import format_table, write_metrics_json

    thresholds = parse_tiou_thresholds(args.tiou) if args.tiou else None  # fail fast on a bad spec
    ground_truth = load_ground_truth(args.ground_truth, args.split)
    predictions = load_predictions(args.predictions, ground_truth.class_names)
    thresholds = thresholds or protocol_thresholds(ground_truth)
    result = evaluate_detection(ground_truth, predictions, thresholds, max_per_video=args.max_per_video,
                                tie_break=args.tie_break)
    dropped = ground_truth.info.get("duplicates_dropped", 0)
    title = f"split {ground_truth.info.get('split', args.split)}" + (
        f" ({dropped} duplicate ground-truth segments dropped)" if dropped else "")
    print(format_table(result, title=title))
    if args.json_out:
        write_metrics_json(args.json_out, result)
        print(f"metrics written to {args.json_out}")
    return 0


def run_checkpoint_mode(args: argparse.Namespace) -> int:
    """Delegates to the distributed evaluator (Ray), imported only here."""
    from clasp_dist.cli import init_ray
    from clasp_dist.evaluation import distributed
    from clasp_dist.evaluation.metric import DetectionResult, parse_tiou_thresholds

    init_ray()
    from clasp_dist.evaluation.report import format_table

    result = distributed.evaluate_checkpoint(
        checkpoint=args.checkpoint, data_root=args.data, split=args.split, out_dir=args.out, plot=args.plot,
        tiou_thresholds=parse_tiou_thresholds(args.tiou) if args.tiou else None, overrides=list(args.overrides))
    if isinstance(result, DetectionResult):
        print(format_table(result, title=f"checkpoint {args.checkpoint}, split {args.split}"))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    mode = check_mode(parser, args)
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.WARNING, format="%(levelname)s %(message)s")
    from clasp_dist.evaluation.metric import EvaluationInputError

    try:
        return run_files_mode(args) if mode == "files" else run_checkpoint_mode(args)
    except (EvaluationInputError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
