"""`clasp predict`: segments for a split of a shard dataset, from an exported checkpoint (no annotations needed)."""

from __future__ import annotations

import argparse

from .common import add_overrides, check_before_ray, load_cfg, require_data_root

SUMMARY = "predict segments for a split of a dataset with a checkpoint (an ActivityNet results JSON)"

DESCRIPTION = """Predict segments for a split of a shard dataset with an exported checkpoint (no annotations needed).

Writes DIR/predictions_<split>.json, an ActivityNet results JSON
({"version", "results": {video_id: [{"segment", "label", "score"}]}}), the file `clasp evaluate` reads.
Runs the distributed evaluator's actor pool (Ray Data), one model load per actor."""

EXAMPLES = """example:
  clasp predict --checkpoint runs/default/export data.root=s3://bucket/new_videos --split test --out preds"""


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser("predict", help=SUMMARY, description=DESCRIPTION, epilog=EXAMPLES, config_sections=())
    add_overrides(parser, "data.root=ROOT eval.num_actors=2 decode.max_segments=50")
    parser.add_argument(
        "--checkpoint", required=True, metavar="CKPT", help="export or checkpoint dir (weights.pt + model.json)"
    )
    parser.add_argument("--split", default="test", help="split to predict (default: test)")
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="output folder (local path, s3:// or gs://) for the results JSON"
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    cfg = load_cfg(args.overrides)
    root = require_data_root(cfg)
    # the split names the output file: checked before it is joined onto --out
    check_before_ray(checkpoint=args.checkpoint, data=root, split=args.split, out_dir=args.out, storage=cfg.storage)
    # here, not at the top: torch and Ray load only after the arguments parse, so --help stays fast
    from ..data.filesystem import join
    from ..inference.predict import predict_checkpoint
    from .ray_start import init_ray

    path = join(args.out, f"predictions_{args.split}.json")
    check_before_ray(out_file=path)
    init_ray()
    count, n_segments = predict_checkpoint(args.checkpoint, root, args.split, path, args.overrides)
    print(f"wrote {n_segments} segments for {count} videos to {path}")
    return 0
