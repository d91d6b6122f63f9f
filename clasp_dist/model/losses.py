"""CLASP training loss (docs/model.md): L = L_base + lambda_p * L_prop.

L_base = BCE(video_a, y) + BCE(video_v, y) on the base MIL video logits; L_prop is the same on the
refined video logits (0 when ATP is off). With unimodal MEAE heads, L += lambda_u * L_uni, the same
BCE on the unimodal heads' video logits (video-level labels only, like every term). BCE-with-logits,
mean over videos and classes, float32.
The named terms stay detached tensors on the loss's device: reading them is a host sync, which the
training loop does once per log interval (`LossMeter`), never per micro-batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config.schema import LossConfig
from .output import ModelOutput


def _bce(logits: Tensor, labels: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


def _pair_loss(video_a: Tensor, video_v: Tensor, labels: Tensor, name: str, suffix: str, terms: dict) -> Tensor:
    """BCE(video_a) + BCE(video_v) of one pair of heads, recorded in `terms` as name, bce_a<suffix>, bce_v<suffix>."""
    bce_a = _bce(video_a, labels)
    bce_v = _bce(video_v, labels)
    terms[name], terms[f"bce_a{suffix}"], terms[f"bce_v{suffix}"] = bce_a + bce_v, bce_a, bce_v
    return terms[name]


def compute_loss(
    out: ModelOutput, labels: Tensor, mask: Tensor | None, cfg: LossConfig
) -> tuple[Tensor, dict[str, Tensor]]:
    """(total loss tensor, named detached 0-d terms). `mask` is accepted for the contract; MIL already honours it."""
    terms: dict[str, Tensor] = {}
    total = _pair_loss(out.video_a, out.video_v, labels, "loss_base", "", terms)
    if out.video_a_ref is not None:
        total = total + cfg.lambda_p * _pair_loss(out.video_a_ref, out.video_v_ref, labels, "loss_prop", "_ref", terms)
    if out.video_a_uni is not None:
        total = total + cfg.lambda_u * _pair_loss(out.video_a_uni, out.video_v_uni, labels, "loss_uni", "_uni", terms)
    terms["loss"] = total
    return total, {k: v.detach() for k, v in terms.items()}


class LossMeter:
    """Sums loss terms on their device; `means()` is the single host sync (once per log interval)."""

    def __init__(self) -> None:
        self.keys: tuple[str, ...] = ()
        self.sums: Tensor | None = None  # [K] running sums, on the loss's device
        self.count = 0

    def add(self, terms: dict[str, Tensor]) -> None:
        if self.sums is None:
            self.keys = tuple(terms)
        values = torch.stack([terms[k].float() for k in self.keys])  # [K], no sync
        self.sums = values if self.sums is None else self.sums + values
        self.count += 1

    def means(self) -> dict[str, float]:
        """Mean of each term since the last reset (one device-to-host copy)."""
        if self.sums is None:
            return {}
        return dict(zip(self.keys, (self.sums / self.count).tolist()))

    def reset(self) -> None:
        self.sums, self.count = None, 0
