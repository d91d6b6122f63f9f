"""Evaluation: ActivityNet-style segment mAP (metric: the algorithm; results: its input and output
tables), file formats (formats), tables and metrics JSON (report). The checkpoint evaluator
(clasp_dist.inference.predict, Ray) is imported lazily by its callers and is not re-exported here, so
that importing this package never imports Ray."""

from .metric import (
    ANET_TIOU,
    MAX_PREDICTIONS_PER_VIDEO,
    TOP_KX,
    UNAV100_TIOU,
    evaluate_detection,
    format_threshold,
    parse_tiou_thresholds,
    segment_tiou,
)
from .results import DetectionResult, EvaluationInputError, Segments

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
