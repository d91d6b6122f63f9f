"""CLASP training loss (SPEC 4.2, 4.5): L = L_base + lambda_p * L_prop.

L_base = BCE(video_a, y) + BCE(video_v, y) on the base MIL video logits; L_prop is the same on the
refined video logits (0 when ATP is off). BCE-with-logits, mean over videos and classes, float32.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .config.schema import LossConfig
from .model.output import ModelOutput


def _bce(logits: Tensor, labels: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


def compute_loss(out: ModelOutput, labels: Tensor, mask: Optional[Tensor], cfg: LossConfig
                 ) -> tuple[Tensor, dict[str, float]]:
    """(total loss tensor, named float terms). `mask` is accepted for the contract; MIL already honours it."""
    bce_a = _bce(out.video_a, labels)
    bce_v = _bce(out.video_v, labels)
    base = bce_a + bce_v
    terms = {"loss_base": base, "bce_a": bce_a, "bce_v": bce_v}
    total = base
    if out.video_a_ref is not None:
        bce_a_ref = _bce(out.video_a_ref, labels)
        bce_v_ref = _bce(out.video_v_ref, labels)
        prop = bce_a_ref + bce_v_ref
        total = base + cfg.lambda_p * prop
        terms.update(loss_prop=prop, bce_a_ref=bce_a_ref, bce_v_ref=bce_v_ref)
    terms["loss"] = total
    return total, {k: float(v.detach()) for k, v in terms.items()}
