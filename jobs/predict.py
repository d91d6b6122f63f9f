#!/usr/bin/env python
"""Predict segments for a split of a shard dataset with an exported checkpoint (no annotations needed).

Writes an ActivityNet results JSON ({"version", "results": {video_id: [{"segment", "label", "score"}]}}).
Runs the distributed evaluator's actor pool (Ray Data), one model load per actor.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: ./dev jobs/predict.py --checkpoint runs/default/export "
        "--data s3://bucket/new_videos --split test --out preds.json",
    )
    parser.add_argument("--checkpoint", required=True, help="export or checkpoint dir (weights.pt + model.json)")
    parser.add_argument("--data", required=True, help="dataset root (local path, s3:// or gs://) with manifest.json")
    parser.add_argument("--split", default="test", help="split to predict (default: test)")
    parser.add_argument("--out", required=True, help="where to write the results JSON (local path, s3:// or gs://)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides, e.g. eval.num_actors=2 eval.batch_size=32 decode.max_segments=50",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # here, not at the top: torch and Ray load only after the arguments parse, so --help stays fast
    from clasp_dist.cli import check_before_ray, init_ray
    from clasp_dist.evaluation.distributed import predict_checkpoint

    check_before_ray(checkpoint=args.checkpoint, data=args.data, split=args.split, out_file=args.out)
    init_ray()
    count, n_segments = predict_checkpoint(args.checkpoint, args.data, args.split, args.out, args.overrides)
    print(f"wrote {n_segments} segments for {count} videos to {args.out}")
    return 0


if __name__ == "__main__":
    from clasp_dist.input_errors import report_bad_input

    sys.exit(report_bad_input(main))
