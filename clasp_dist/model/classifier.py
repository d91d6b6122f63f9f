"""Weak classifier parts (docs/model.md): CAS heads and MIL pooling to video logits.

A CAS head is conv3+LN+ReLU then a 1x1 to C classes. MIL pooling is either the top-k mean over
the valid steps (k = max(1, T_valid // r) per video, vectorised by sorting with padded = -inf and
a per-video rank mask) or attentive pooling (a per-class softmax over valid steps, from the head's
hidden features).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .encoder import ConvLNReLU, masked_fill_steps


class CASHead(nn.Module):
    """[B, T, d] -> (cas logits [B, T, C], hidden [B, T, d])."""

    def __init__(self, d: int, num_classes: int, prior: float = 0.01):
        super().__init__()
        self.hidden = ConvLNReLU(d, d, kernel_size=3)
        self.cls = nn.Linear(d, num_classes)  # the 1x1 conv
        # Start every class at probability `prior` (RetinaNet/ActionFormer prior init): with ~1.6 of 100
        # classes per video, a zero bias spends the first epochs only learning to say "absent".
        nn.init.constant_(self.cls.bias, -math.log((1.0 - prior) / prior))

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        h = self.hidden(x, mask)  # [B, T, d]
        return self.cls(h), h  # [B, T, C], [B, T, d]


def topk_k(mask: Tensor, ratio: int) -> Tensor:
    """k = max(1, T_valid // ratio) per video: [B] int64."""
    return torch.clamp(mask.sum(dim=1) // ratio, min=1)


def topk_mil(cas: Tensor, mask: Tensor, ratio: int) -> Tensor:
    """Mean of the top-k valid logits per class; cas [B, T, C] -> [B, C] float32."""
    B, T, C = cas.shape
    x = cas.float().masked_fill(~mask.unsqueeze(-1), float("-inf"))  # [B, T, C]
    k = topk_k(mask, ratio)  # [B]
    top = torch.sort(x, dim=1, descending=True).values  # [B, T, C] (full sort: no host sync for max k)
    keep = torch.arange(T, device=cas.device)[None, :] < k[:, None]  # [B, T] rank < k (never a padded step)
    top = torch.where(keep.unsqueeze(-1), top, torch.zeros_like(top))  # [B, T, C]
    return top.sum(dim=1) / k.unsqueeze(-1).to(top.dtype)  # [B, C]


class MILPooling(nn.Module):
    """CAS [B, T, C] (+ head hidden [B, T, d]) -> video logits [B, C] (float32)."""

    def __init__(self, mode: str, ratio: int, d: int, num_classes: int):
        super().__init__()
        self.mode = mode
        self.ratio = ratio
        self.att = nn.Linear(d, num_classes) if mode == "attentive" else None

    def forward(self, cas: Tensor, hidden: Tensor, mask: Tensor) -> Tensor:
        if self.mode == "topk":
            return topk_mil(cas, mask, self.ratio)
        logits = self.att(hidden).float().masked_fill(~mask.unsqueeze(-1), float("-inf"))  # [B, T, C]
        w = torch.softmax(logits, dim=1)  # [B, T, C] sums to 1 over valid steps
        return (w * masked_fill_steps(cas.float(), mask)).sum(dim=1)  # [B, C]


class WeakClassifier(nn.Module):
    """Per-modality CAS heads + MIL pooling: (cas_a, cas_v [B, T, C], video_a, video_v [B, C])."""

    def __init__(self, d: int, num_classes: int, mil_pooling: str, mil_ratio: int, prior: float = 0.01):
        super().__init__()
        self.head_a = CASHead(d, num_classes, prior)
        self.head_v = CASHead(d, num_classes, prior)
        self.pool_a = MILPooling(mil_pooling, mil_ratio, d, num_classes)
        self.pool_v = MILPooling(mil_pooling, mil_ratio, d, num_classes)

    def forward(self, a: Tensor, v: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        cas_a, h_a = self.head_a(a, mask)  # [B, T, C], [B, T, d]
        cas_v, h_v = self.head_v(v, mask)  # [B, T, C], [B, T, d]
        return cas_a, cas_v, self.pool_a(cas_a, h_a, mask), self.pool_v(cas_v, h_v, mask)
