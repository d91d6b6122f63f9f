#!/usr/bin/env python
"""Evaluate temporal detections with ActivityNet-style segment mAP (UnAV-100 / ActivityNet 1.3).

Two modes:

  files       ./dev jobs/evaluate.py --predictions P.json --ground-truth GT.json [--split test]
                  [--tiou 0.1:0.9:0.1] [--json-out M.json]
  checkpoint  ./dev jobs/evaluate.py --checkpoint CKPT [--data ROOT] [--split test] [--out DIR]
                  [--plot N] [key=value ...]      (runs the model with the distributed evaluator)
"""

from __future__ import annotations

import argparse
import logging
import sys

EXAMPLES = """examples:
  # score a run's test predictions against the packaged UnAV-100 annotations (thresholds 0.1:0.1:0.9)
  ./dev jobs/evaluate.py --predictions runs/<name>/test/predictions_test.json \\
      --ground-truth clasp_dist/resources/unav100_annotations.json --split test --json-out metrics.json
  # ActivityNet 1.3 validation (200 classes -> 0.5:0.05:0.95 by default)
  ./dev jobs/evaluate.py --predictions anet_results.json --ground-truth anet13.json --split validation
  # custom thresholds
  ./dev jobs/evaluate.py --predictions P.json --ground-truth GT.json --tiou 0.3,0.5,0.7
  # evaluate a run's exported model on its dataset (Ray actor pool; config overrides as key=value)
  ./dev jobs/evaluate.py --checkpoint runs/<name>/export --split test --out runs/<name>/eval --plot 8

semantics (official ActivityNet/UnAV evaluation, SPEC 3), each case counted in the output:
  prediction on a video outside the split      false positive      (--ignore-unknown-videos: dropped)
  label with no ground truth in the split      ignored             (unknown names and ids too)
  predictions per video                        all of them         (--max-per-video N: top N by score)
  split video with ground truth, no prediction all its segments are misses (--only-predicted-videos:
                                               score only the videos the predictions file lists)
  a label that cannot be one (negative, fractional), a NaN score or time: an error naming video and entry.
The options in parentheses are opt-in departures: their numbers are not the official ones.
conventions: mAP and recall are fractions (0..1) in --json-out and percentages in the printed table."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evaluate.py",
        description=__doc__.split("\n\n")[0],
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    files = parser.add_argument_group("files mode (score a results JSON)")
    files.add_argument(
        "--predictions",
        metavar="P.json",
        help="ActivityNet results JSON {'results': {vid: [{'segment', 'label', 'score'}]}} "
        "(local path, s3:// or gs:// URL); labels are class names or integer ids",
    )
    files.add_argument(
        "--ground-truth",
        metavar="GT.json",
        help="ActivityNet/UnAV annotation JSON {'database': {vid: {'subset', 'duration', 'annotations'}}}",
    )
    files.add_argument(
        "--json-out",
        metavar="M.json",
        help="write the metrics JSON {'0.1': mAP, ..., 'average', 'recall@1x', 'recall@5x'} (fractions)",
    )
    files.add_argument(
        "--max-per-video",
        type=int,
        default=None,
        metavar="N",
        help="opt-in: score only the top N predictions of each video by score (default: all, as "
        "the official evaluation; the decoder already keeps at most decode.max_segments)",
    )
    files.add_argument(
        "--ignore-unknown-videos",
        action="store_true",
        help="opt-in: drop predictions on videos that are not in the split (default: each is a "
        "false positive, as the official evaluation); counted either way",
    )
    files.add_argument(
        "--only-predicted-videos",
        action="store_true",
        help="opt-in: score only the split's videos that the predictions file lists (default: "
        "every video of the split; one without predictions counts as all misses)",
    )
    files.add_argument(
        "--tie-break",
        choices=("stable", "official"),
        default="stable",
        help="order of equal scores / equal tIoU: 'stable' = input order (default, deterministic); "
        "'official' = the official script's np.argsort(...)[::-1] calls (numpy-build dependent)",
    )

    ckpt = parser.add_argument_group("checkpoint mode (run a trained model, distributed)")
    ckpt.add_argument("--checkpoint", metavar="CKPT", help="checkpoint or export directory (local, s3:// or gs://)")
    ckpt.add_argument(
        "--data",
        metavar="ROOT",
        help="dataset root holding manifest.json and shards (default: the "
        "checkpoint's data.root, or the semi-synthetic dataset it was trained on, from the cache)",
    )
    ckpt.add_argument("--out", metavar="DIR", help="output folder: predictions JSON, metrics JSON, plots")
    ckpt.add_argument("--plot", type=int, default=0, metavar="N", help="draw timelines of N videos (default: 0)")
    ckpt.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides for the checkpoint mode (e.g. eval.num_actors=4)",
    )

    common = parser.add_argument_group("both modes")
    common.add_argument(
        "--split",
        default="test",
        help="split to score: train/validation/test (ActivityNet's training/testing accepted); default test",
    )
    common.add_argument(
        "--tiou",
        metavar="SPEC",
        help="tIoU thresholds: START:STOP:STEP with STOP inclusive (0.5:0.95:0.05 gives 10 values) "
        "or a comma list 0.3,0.5,0.7. Default: the dataset's protocol, ActivityNet 1.3 "
        "0.5:0.05:0.95 (200 classes or training/testing subsets), else UnAV-100 0.1:0.1:0.9",
    )
    common.add_argument("--quiet", action="store_true", help="print only the table (no notes on counted cases)")
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
    # imports here, not at the top: --help stays fast, and the files mode never loads torch or Ray
    from clasp_dist.evaluation.formats import load_ground_truth, load_predictions, protocol_thresholds
    from clasp_dist.evaluation.metric import EvaluationInputError, evaluate_detection, parse_tiou_thresholds
    from clasp_dist.evaluation.report import coverage_note, format_table, write_metrics_json

    from clasp_dist.cli import check_before_ray

    thresholds = parse_tiou_thresholds(args.tiou) if args.tiou else None  # fail fast on a bad spec
    check_before_ray(out_file=args.json_out)
    ground_truth = load_ground_truth(args.ground_truth, args.split)
    predictions = load_predictions(args.predictions, ground_truth.class_names, ground_truth.info["label_ids"])
    thresholds = thresholds or protocol_thresholds(ground_truth)
    video_ids = None
    if args.only_predicted_videos:
        video_ids = [v for v in predictions.videos if v in set(ground_truth.videos)]
        if not video_ids:
            raise EvaluationInputError(f"{args.predictions}: none of its videos is in split '{args.split}'")
    result = evaluate_detection(
        ground_truth,
        predictions,
        thresholds,
        video_ids,
        max_per_video=args.max_per_video,
        ignore_unknown_videos=args.ignore_unknown_videos,
        tie_break=args.tie_break,
    )
    dropped = ground_truth.info.get("duplicates_dropped", 0)
    split = ground_truth.info.get("split", args.split)
    title = f"split {split}" + (f" ({dropped} duplicate ground-truth segments dropped)" if dropped else "")
    if video_ids is not None:
        title += f", only the {len(video_ids)} predicted videos of {len(ground_truth.videos)} (--only-predicted-videos)"
    print(format_table(result, title=title))
    note = coverage_note(result, split, len(ground_truth.videos), args.predictions, video_ids is not None)
    if note and not args.quiet:
        print(note)
    if args.json_out:
        write_metrics_json(args.json_out, result)
        print(f"metrics written to {args.json_out}")
    return 0


def run_checkpoint_mode(args: argparse.Namespace) -> int:
    """Delegates to the distributed evaluator (Ray), imported only here."""
    from clasp_dist.cli import check_before_ray, init_ray
    from clasp_dist.evaluation import distributed
    from clasp_dist.evaluation.metric import DetectionResult, parse_tiou_thresholds

    thresholds = parse_tiou_thresholds(args.tiou) if args.tiou else None
    check_before_ray(checkpoint=args.checkpoint, data=args.data, split=args.split, out_dir=args.out)
    init_ray()
    from clasp_dist.evaluation.report import coverage_note, format_table

    result = distributed.evaluate_checkpoint(
        checkpoint=args.checkpoint,
        data_root=args.data,
        split=args.split,
        out_dir=args.out,
        plot=args.plot,
        tiou_thresholds=thresholds,
        overrides=list(args.overrides),
    )
    if isinstance(result, DetectionResult):
        print(format_table(result, title=f"checkpoint {args.checkpoint}, split {args.split}"))
        note = coverage_note(result, args.split, result.num_videos, "the model's predictions", only_predicted=True)
        if note and not args.quiet:
            print(note)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    mode = check_mode(parser, args)
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("clasp_dist.evaluation.metric").setLevel(logging.ERROR)  # the notes below say it once
    from clasp_dist.evaluation.metric import EvaluationInputError

    try:
        return run_files_mode(args) if mode == "files" else run_checkpoint_mode(args)
    except (EvaluationInputError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    from clasp_dist.input_errors import report_bad_input

    sys.exit(report_bad_input(main))
