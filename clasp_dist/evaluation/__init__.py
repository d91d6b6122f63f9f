"""Evaluation: ActivityNet-style segment mAP (metric), file formats (formats), tables and metrics
JSON (report). The distributed checkpoint evaluator (distributed.py, Ray) is imported lazily by its
callers and is not re-exported here, so that importing this package never imports Ray."""

from .metric import (
    ANET_TIOU,
    MAX_PREDICTIONS_PER_VIDEO,
    TOP_KX,
    UNAV100_TIOU,
    DetectionResult,
    EvaluationInputError,
    Segments,
    evaluate_detection,
    format_threshold,
    parse_tiou_thresholds,
    segment_tiou,
)

__all__ = [
    "ANET_TIOU",
    "MAX_PREDICTIONS_PER_VIDEO",
    "TOP_KX",
    "UNAV100_TIOU",
    "DetectionResult",
    "EvaluationInputError",
    "Segments",
    "evaluate_detection",
    "format_threshold",
    "parse_tiou_thresholds",
    "segment_tiou",
]
