"""`clasp evaluate`: ActivityNet-style segment mAP of a results JSON, or of a checkpoint run on its dataset."""

from __future__ import annotations

import argparse
import logging

from .common import CommandError, add_overrides, check_before_ray, load_cfg, override_value

SUMMARY = "segment mAP (ActivityNet-exact) of a results JSON, or of a checkpoint run on a dataset"

DESCRIPTION = """Evaluate temporal detections with ActivityNet-style segment mAP (UnAV-100 / ActivityNet 1.3).

Two modes:
  files       --predictions P.json --ground-truth GT.json [--split test] [--out DIR]
  checkpoint  --checkpoint CKPT [data.root=ROOT] [--split test] [--out DIR] [--plot N]
              (runs the model with the distributed evaluator)
--out DIR receives metrics_<split>.json (both modes), predictions_<split>.json and timelines/ (checkpoint mode).
tIoU thresholds are the key eval.tiou_thresholds, also written START:STOP:STEP with STOP inclusive (0.5:0.95:0.05
gives 10 values) or V1,V2,...; default: the dataset's protocol, ActivityNet 1.3 0.5:0.95:0.05 (200 classes or
training/testing subsets), else UnAV-100 0.1:0.9:0.1."""

EXAMPLES = """examples:
  # score a run's test predictions against the packaged UnAV-100 annotations (thresholds 0.1:0.1:0.9)
  clasp evaluate --predictions runs/<name>/test/predictions_test.json \\
      --ground-truth clasp_dist/resources/unav100_annotations.json --split test --out runs/<name>/eval
  # ActivityNet 1.3 validation (200 classes -> 0.5:0.05:0.95 by default)
  clasp evaluate --predictions anet_results.json --ground-truth anet13.json --split validation
  # custom thresholds
  clasp evaluate --predictions P.json --ground-truth GT.json eval.tiou_thresholds=0.3,0.5,0.7
  # evaluate a run's exported model on its dataset (Ray actor pool)
  clasp evaluate --checkpoint runs/<name>/export --split test --out runs/<name>/eval --plot 8

semantics (official ActivityNet/UnAV evaluation), each case counted in the output:
  prediction on a video outside the split      false positive      (--ignore-unknown-videos: dropped)
  label with no ground truth in the split      ignored             (unknown names and ids too)
  predictions per video                        all of them         (--max-per-video N: top N by score)
  split video with ground truth, no prediction all its segments are misses (--only-predicted-videos:
                                               score only the videos the predictions file lists)
  a label that cannot be one (negative, fractional), a NaN score or time: an error naming video and entry.
The options in parentheses are opt-in departures: their numbers are not the official ones.
conventions: mAP and recall are fractions (0..1) in metrics_<split>.json and percentages in the printed table."""

TIOU_KEY = "eval.tiou_thresholds"
FILES_ARGS = ("predictions", "ground_truth")
CHECKPOINT_ARGS = ("checkpoint",)


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser("evaluate", help=SUMMARY, description=DESCRIPTION, epilog=EXAMPLES, config_sections=())
    add_overrides(parser, "eval.num_actors=4")
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
    ckpt.add_argument(
        "--checkpoint",
        metavar="CKPT",
        help="checkpoint or export directory (local, s3:// or gs://); its dataset is its own data.root "
        "(or the semi-synthetic dataset it was trained on) unless data.root=ROOT says otherwise",
    )
    ckpt.add_argument("--plot", type=int, default=0, metavar="N", help="draw timelines of N videos (default: 0)")
    common = parser.add_argument_group("both modes")
    common.add_argument(
        "--split",
        default="test",
        help="split to score: train/validation/test (ActivityNet's training/testing accepted); default test",
    )
    common.add_argument("--out", metavar="DIR", help="output folder (local, s3:// or gs://); see above")
    common.add_argument("--quiet", action="store_true", help="print only the table (no notes on counted cases)")
    parser.set_defaults(run=run)
    return parser


def check_mode(args: argparse.Namespace) -> str:
    """'files' or 'checkpoint'; bad input when the two are mixed or half given."""
    given_files = [n for n in FILES_ARGS if getattr(args, n)]
    if args.checkpoint:
        if given_files:
            raise CommandError(f"--checkpoint cannot be combined with --{given_files[0].replace('_', '-')}")
        return "checkpoint"
    if args.plot:
        raise CommandError("--plot belongs to the checkpoint mode (--checkpoint CKPT)")
    other_keys = [o for o in args.overrides if o.split("=", 1)[0].strip() != TIOU_KEY]
    if other_keys:
        raise CommandError(f"{other_keys[0]}: the files mode reads only {TIOU_KEY}; other keys need --checkpoint")
    if len(given_files) < len(FILES_ARGS):
        raise CommandError("give --predictions and --ground-truth (files mode), or --checkpoint (checkpoint mode)")
    return "files"


def expand_tiou(overrides: list[str]) -> list[str]:
    """`eval.tiou_thresholds=0.5:0.95:0.05` (or `=0.3,0.5,0.7`) as the list the config key holds."""
    from ..evaluation.metric import parse_tiou_thresholds

    text = override_value(overrides, TIOU_KEY)
    if text is None or text.strip().startswith("[") or text.strip().lower() in ("null", "none"):
        return overrides
    values = parse_tiou_thresholds(text)
    return [o for o in overrides if o.split("=", 1)[0].strip() != TIOU_KEY] + [f"{TIOU_KEY}={list(values)}"]


def run(args: argparse.Namespace) -> int:
    mode = check_mode(args)
    args.overrides = expand_tiou(list(args.overrides))
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("clasp_dist.evaluation.metric").setLevel(logging.ERROR)  # the notes below say it once
    return run_files_mode(args) if mode == "files" else run_checkpoint_mode(args)


def run_files_mode(args: argparse.Namespace) -> int:
    # imports here, not at the top: --help stays fast, and the files mode never loads torch or Ray
    from ..data.filesystem import join
    from ..evaluation.formats import load_ground_truth, load_predictions, protocol_thresholds
    from ..evaluation.metric import EvaluationInputError, evaluate_detection
    from ..evaluation.report import coverage_note, format_table, write_metrics_json

    cfg = load_cfg(args.overrides)
    check_before_ray(split=args.split, out_dir=args.out)
    ground_truth = load_ground_truth(args.ground_truth, args.split)
    predictions = load_predictions(args.predictions, ground_truth.class_names, ground_truth.info["label_ids"])
    thresholds = cfg.eval.tiou_thresholds or protocol_thresholds(ground_truth)
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
    if args.out:
        path = join(args.out, f"metrics_{args.split}.json")  # the name the checkpoint mode's evaluator writes
        write_metrics_json(path, result)
        print(f"metrics written to {path}")
    return 0


def run_checkpoint_mode(args: argparse.Namespace) -> int:
    """Delegates to the distributed evaluator (Ray), imported only here."""
    from ..evaluation.metric import DetectionResult
    from ..evaluation.report import coverage_note, format_table
    from ..inference import predict as distributed
    from .ray_start import init_ray

    cfg = load_cfg(args.overrides)  # the thresholds and every other key validated before Ray starts
    check_before_ray(
        checkpoint=args.checkpoint, data=cfg.data.root or None, split=args.split, out_dir=args.out, storage=cfg.storage
    )
    init_ray()
    result = distributed.evaluate_checkpoint(
        checkpoint=args.checkpoint,
        data_root=None,  # data.root=ROOT among the overrides, else the checkpoint's own
        split=args.split,
        out_dir=args.out,
        plot=args.plot,
        overrides=list(args.overrides),
    )
    if isinstance(result, DetectionResult):
        print(format_table(result, title=f"checkpoint {args.checkpoint}, split {args.split}"))
        note = coverage_note(result, args.split, result.num_videos, "the model's predictions", only_predicted=True)
        if note and not args.quiet:
            print(note)
    if args.out:
        print(f"written to {args.out}")
    return 0
