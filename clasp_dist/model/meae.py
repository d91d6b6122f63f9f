"""Mutual Event Agreement Evaluation (docs/model.md), computed without gradient in float32.

For each step t and the relevant class set K (training: the labels; inference: the predicted
classes), the discrepancy D_t between audio and visual predictions:
  l1      mean_{c in K} |sigmoid(S_a) - sigmoid(S_v)|
  js      Jensen-Shannon divergence (base 2, so in [0, 1]) of softmax over (K logits + a background logit 0)
  argmax  1 if the argmax over K + background differs between the modalities, else 0
agreement s_t = 1 - D_t; confidence e_t = max_{c in K} sqrt(P_a P_v); anchor score alpha_t = s_t e_t
(or s_t alone). Padded steps get agreement 0 and anchor score 0. The caller chooses which heads' logits
each term reads (the base heads, or unimodal heads before the encoder's cross-modal block).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


@torch.no_grad()
def inference_class_set(video_a: Tensor, video_v: Tensor, threshold: float) -> Tensor:
    """Predicted classes [B, C] bool: sqrt(p_a p_v) >= threshold, and at least the top-1."""
    p = torch.sqrt(torch.sigmoid(video_a.float()) * torch.sigmoid(video_v.float()))  # [B, C]
    top = torch.zeros_like(p, dtype=torch.bool).scatter_(1, p.argmax(dim=1, keepdim=True), True)  # [B, C]
    return (p >= threshold) | top


@torch.no_grad()
def class_set(labels: Tensor | None, video_a: Tensor, video_v: Tensor, threshold: float) -> Tensor:
    """K [B, C] bool: labels (> 0.5) when given, predicted classes otherwise and for label-less rows."""
    predicted = inference_class_set(video_a, video_v, threshold)  # [B, C]
    if labels is None:
        return predicted
    lab = labels > 0.5  # [B, C]
    return torch.where(lab.any(dim=1, keepdim=True), lab, predicted)


def _background_softmax(logits: Tensor, K: Tensor) -> Tensor:
    """softmax over (K logits, a background logit 0): [B, T, C] -> [B, T, C + 1] (non-K classes = 0)."""
    x = logits.masked_fill(~K.unsqueeze(1), float("-inf"))  # [B, T, C]
    bg = torch.zeros_like(x[..., :1])  # [B, T, 1]
    return torch.softmax(torch.cat([x, bg], dim=-1), dim=-1)  # [B, T, C+1]


@torch.no_grad()
def mutual_event_agreement(
    cas_a: Tensor,
    cas_v: Tensor,
    mask: Tensor,
    K: Tensor,
    discrepancy: str = "l1",
    anchor_score: str = "agreement_confidence",
    conf_cas: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """cas_a, cas_v [B, T, C] logits, mask [B, T] bool, K [B, C] bool -> (agreement, alpha) [B, T] float32.

    The confidence e_t reads `conf_cas` (audio, visual logits [B, T, C]) when given, else cas_a and cas_v.
    """
    sa = cas_a.detach().float()  # [B, T, C]
    sv = cas_v.detach().float()  # [B, T, C]
    Kf = K.unsqueeze(1).float()  # [B, 1, C]
    pa, pv = torch.sigmoid(sa), torch.sigmoid(sv)  # [B, T, C]
    if discrepancy == "l1":
        D = ((pa - pv).abs() * Kf).sum(-1) / Kf.sum(-1).clamp(min=1.0)  # [B, T]
    elif discrepancy == "js":
        qa, qv = _background_softmax(sa, K), _background_softmax(sv, K)  # [B, T, C+1]
        m = 0.5 * (qa + qv)
        kl_a = torch.xlogy(qa, qa) - torch.xlogy(qa, m)  # 0 log 0 = 0
        kl_v = torch.xlogy(qv, qv) - torch.xlogy(qv, m)
        D = (0.5 * (kl_a + kl_v).sum(-1) / math.log(2.0)).clamp(0.0, 1.0)  # [B, T]
    elif discrepancy == "argmax":
        qa, qv = _background_softmax(sa, K), _background_softmax(sv, K)  # [B, T, C+1]
        D = (qa.argmax(-1) != qv.argmax(-1)).float()  # [B, T]
    else:
        raise ValueError(f"unknown discrepancy {discrepancy!r}")
    agreement = (1.0 - D) * mask.float()  # [B, T]
    if anchor_score == "agreement_confidence":
        if conf_cas is not None:
            pa, pv = (torch.sigmoid(x.detach().float()) for x in conf_cas)  # [B, T, C] each
        conf = torch.sqrt(pa * pv).masked_fill(~K.unsqueeze(1), 0.0).amax(-1)  # [B, T]
        alpha = agreement * conf
    elif anchor_score == "agreement":
        alpha = agreement
    else:
        raise ValueError(f"unknown anchor_score {anchor_score!r}")
    return agreement, alpha * mask.float()
