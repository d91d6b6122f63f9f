"""The floor: test mAP of an untrained (freshly initialised) CLASP on a dataset, same decoder and metric.

    python bench/untrained_baseline.py [key=value ...]     # default: the embedded `small` preset

Writes bench/results/local/untrained_baseline.json (`--record`: the tracked bench/results/ one). This is the number the embedded training run must beat.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.outputs import add_output_args, output_path  # noqa: E402
from clasp_dist.config import load_config  # noqa: E402
from clasp_dist.inference.predict import predict_local, score  # noqa: E402
from clasp_dist.model import build_model  # noqa: E402
from clasp_dist.training.driver import dataset_info, resolve_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (config=PRESET, ...)")
    add_output_args(parser)
    args = parser.parse_args()
    cfg = load_config(args.overrides)
    root = resolve_dataset(cfg)
    info, _ = dataset_info(root, cfg)
    torch.manual_seed(cfg.train.seed)
    weights = build_model(cfg, info).state_dict()
    result = score(predict_local(weights, cfg, info, root, "test"), info, cfg)
    out = {
        "root": root,
        "average": float(result.average),
        "mAP": {f"{t:g}": float(m) for t, m in zip(result.tiou_thresholds, result.mAP)},
    }
    print(f"untrained test avg mAP: {out['average'] * 100:.2f}")
    path = output_path(args, "untrained_baseline.json")
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
