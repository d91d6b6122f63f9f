"""Cross-modal Salient Anchor Identification (docs/model.md), vectorised over batch and time.

Global-video anchors: the top ceil(T_valid / global_ratio) valid steps by alpha. Local-window
anchors: the valid steps are split, in order, into windows of w steps, and each window's best
step is an anchor if its alpha reaches the video's floor: ``min + tau (max - min)`` of alpha over
the video's valid steps (tau_mode ``relative``, the default), or tau itself (``absolute``). The
relative floor means the same for every anchor score: ``agreement_confidence`` is about 0.01
early in training and ``agreement`` about 0.99, so an absolute tau of 0.1 gave one arm no local
anchors and the other one in every window. Anchors are the union; a video with none gets its best
valid step. Padded steps are never anchors. No gradient flows through the selection.
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def global_anchors(alpha: Tensor, mask: Tensor, ratio: int) -> Tensor:
    """[B, T] bool: the top ceil(T_valid / ratio) valid steps of alpha [B, T]."""
    B, T = alpha.shape
    x = alpha.float().masked_fill(~mask, float("-inf"))  # [B, T]
    n = (mask.sum(dim=1) + ratio - 1) // ratio  # [B] ceil(T_valid / ratio)
    idx = torch.sort(x, dim=1, descending=True, stable=True).indices  # [B, T] steps by rank
    keep = torch.arange(T, device=alpha.device)[None, :] < n[:, None]  # [B, T] rank < n
    out = torch.zeros(B, T, dtype=torch.bool, device=alpha.device)
    return out.scatter_(1, idx, keep) & mask


@torch.no_grad()
def local_floor(alpha: Tensor, mask: Tensor, tau: float, tau_mode: str) -> Tensor:
    """[B, 1] minimum alpha of a local anchor: tau, or min + tau (max - min) over each video's valid steps."""
    if tau_mode == "absolute":
        return torch.full_like(alpha[:, :1], tau, dtype=torch.float32)
    x = alpha.float()
    hi = x.masked_fill(~mask, float("-inf")).amax(dim=1, keepdim=True)  # [B, 1]
    lo = x.masked_fill(~mask, float("inf")).amin(dim=1, keepdim=True)  # [B, 1]
    return lo + tau * (hi - lo)  # [B, 1] (+-inf for a video with no valid step: no anchor)


@torch.no_grad()
def local_anchors(alpha: Tensor, mask: Tensor, window: int, tau: float, tau_mode: str = "relative") -> Tensor:
    """[B, T] bool: per window of `window` consecutive valid steps, its best step if alpha >= the local floor."""
    B, T = alpha.shape
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices  # [B, T] valid steps first, in order
    x = alpha.float().masked_fill(~mask, float("-inf")).gather(1, order)  # [B, T] compacted
    n_win = (T + window - 1) // window
    pad = n_win * window - T
    x = torch.nn.functional.pad(x, (0, pad), value=float("-inf")).view(B, n_win, window)  # [B, W, w]
    best, arg = x.max(dim=-1)  # [B, W]
    pos = arg + torch.arange(n_win, device=alpha.device)[None, :] * window  # [B, W] compacted index
    ok = torch.isfinite(best) & (best >= local_floor(alpha, mask, tau, tau_mode))  # [B, W]
    src = order.gather(1, pos.clamp(max=T - 1))  # [B, W] original step index
    out = torch.zeros(B, T, dtype=torch.int32, device=alpha.device)
    out.scatter_reduce_(1, src, ok.to(torch.int32), reduce="amax")  # padded windows are never ok
    return out.bool() & mask


@torch.no_grad()
def select_anchors(
    alpha: Tensor,
    mask: Tensor,
    use_global: bool,
    global_ratio: int,
    use_local: bool,
    window: int,
    tau: float,
    tau_mode: str = "relative",
) -> Tensor:
    """Union of the enabled mechanisms, at least one valid anchor per video: [B, T] bool."""
    anchors = torch.zeros_like(mask)
    if use_global:
        anchors |= global_anchors(alpha, mask, global_ratio)
    if use_local:
        anchors |= local_anchors(alpha, mask, window, tau, tau_mode)
    best = alpha.float().masked_fill(~mask, float("-inf")).argmax(dim=1, keepdim=True)  # [B, 1]
    fallback = torch.zeros_like(mask).scatter_(1, best, True) & mask  # [B, T]
    empty = ~anchors.any(dim=1, keepdim=True)  # [B, 1]
    return anchors | (fallback & empty)
