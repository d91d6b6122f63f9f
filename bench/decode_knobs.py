#!/usr/bin/env python
"""Decoding knobs ablated on trained checkpoints: the same weights, decoded four ways.

Variants (default set): the decoder default; `decode.loc_threshold_mode=relative` (levels as fractions of each
video-class signal's range); `decode.video_score=base` (class scores from the base heads); both. On request
(`--variants`): `all-anchors` / `selected-anchors`, the anchor policy swapped at inference on the same weights. Each checkpoint's test split
is predicted in this process (no Ray: `predict_local`) and scored with the project's evaluator. Reports test
average mAP and the share of test videos with no prediction at all, per checkpoint and variant; writes JSON.

    ./dev bench/decode_knobs.py runs/sweeps/regimes_seed0/trials/*/export --out docs/results/regimes/decode_knobs.json
    ./dev bench/decode_knobs.py runs/sweeps/x/trials/*/export --variants default,all-anchors,selected-anchors --out x.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clasp_dist.data.roots import ensure_dataset  # noqa: E402
from clasp_dist.inference.predict import load_for_evaluation, predict_local, score  # noqa: E402
from clasp_dist.tuning import ABLATION_ARMS, arm_settings  # noqa: E402

VARIANTS = {
    "default": [],
    "relative": ["decode.loc_threshold_mode=relative"],
    "base-scores": ["decode.video_score=base"],
    "relative+base-scores": ["decode.loc_threshold_mode=relative", "decode.video_score=base"],
}
# the anchor policy swapped at inference (same weights): does a model trained with selection need it, and does the
# all-anchors control gain from it? `all-anchors` is the ablation's control arm; `selected-anchors` the preset's CLASP
_CONTROL, _FULL = arm_settings("control/all-anchors"), arm_settings("full")
VARIANTS["all-anchors"] = [f"{key}={_CONTROL[key]}" for key in ABLATION_ARMS["control/all-anchors"]]
VARIANTS["selected-anchors"] = [f"{key}={_FULL[key]}" for key in ABLATION_ARMS["control/all-anchors"]]
DEFAULT_VARIANTS = ("default", "relative", "base-scores", "relative+base-scores")


def evaluate_variant(checkpoint: str, overrides: list[str], split: str) -> dict:
    """Test average mAP (%) and share of videos without a prediction for one checkpoint and decode variant."""
    model, cfg, info = load_for_evaluation(checkpoint, overrides)
    predictions = predict_local(model.state_dict(), cfg, info, ensure_dataset(cfg.data, cfg.storage), split)
    result = score(predictions, info, cfg)
    empty = sum(1 for v in predictions.videos if not v.predictions)
    return {
        "average": 100 * result.average,
        "videos": len(predictions.videos),
        "no_prediction_share": empty / max(1, len(predictions.videos)),
        "profile": cfg.data.synth_profile,
        "base_model": not cfg.model.use_atp,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="export (or checkpoint) directories")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", type=Path, required=True, help="JSON output path")
    parser.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help=f"comma-separated, among {', '.join(VARIANTS)} (default: {','.join(DEFAULT_VARIANTS)})",
    )
    args = parser.parse_args(argv)
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        parser.error(f"unknown variant(s) {unknown}; choose among {', '.join(VARIANTS)}")
    rows = []
    for ckpt in args.checkpoints:
        for name in names:
            row = {"checkpoint": ckpt, "variant": name, **evaluate_variant(ckpt, VARIANTS[name], args.split)}
            rows.append(row)
            print(
                f"{ckpt} {row['profile']} {'base' if row['base_model'] else 'clasp'} {name:22s} "
                f"avg mAP {row['average']:6.2f}  no-prediction videos {100 * row['no_prediction_share']:5.1f}%",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
