"""CLASP model package (docs/model.md): plain PyTorch, no Ray/DeepSpeed/file access."""

from .build import build_model
from .clasp import CLASP
from .classifier import MILPooling, topk_mil
from .csai import global_anchors, local_anchors, select_anchors
from .meae import class_set, inference_class_set, mutual_event_agreement
from .output import ModelOutput

__all__ = [
    "CLASP",
    "build_model",
    "ModelOutput",
    "MILPooling",
    "topk_mil",
    "mutual_event_agreement",
    "class_set",
    "inference_class_set",
    "select_anchors",
    "global_anchors",
    "local_anchors",
]
