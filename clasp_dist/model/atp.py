"""Anchor integration and Anchor-based Temporal Propagation (docs/model.md).

Anchor features fuse the two modalities at every step, F_t = LN(ReLU(W [a_t; v_t])) (or the mean
of a_t and v_t); only anchor steps enter the bank, via the attention mask. Every step of each
stream then attends to the bank: X' = X + Attn(LN(X), F, F), followed by a pre-LN FFN. The
thresholded variant also drops (query step t, anchor j) pairs whose similarity is below a floor,
always keeping each step's most similar anchor so that no attention row is empty. The similarity
compares like with like: the query stream's own features at t and at the anchor step j, both
layer-normalised without affine parameters, so the cosine is their correlation over the d
dims (in [-1, 1]). Comparing a raw stream feature with the fused anchor feature (another space)
gave cosines near 0 for every pair, and the floor kept a random subset.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .encoder import AttentionBlock, masked_fill_steps


class AnchorFusion(nn.Module):
    """[a; v] -> anchor features [B, T, d]: LN(ReLU(W [a; v])) ('mlp') or (a + v) / 2 ('mean')."""

    def __init__(self, d: int, mode: str):
        super().__init__()
        self.mode = mode
        if mode == "mlp":
            self.proj = nn.Linear(2 * d, d)
            self.norm = nn.LayerNorm(d)

    def forward(self, a: Tensor, v: Tensor) -> Tensor:
        if self.mode == "mean":
            return 0.5 * (a + v)  # [B, T, d]
        return self.norm(F.relu(self.proj(torch.cat([a, v], dim=-1))))  # [B, T, d]


@torch.no_grad()
def same_stream_similarity(x: Tensor) -> Tensor:
    """[B, T, T] correlation of x [B, T, d] with itself: cosine of the steps after a parameter-free LayerNorm."""
    z = F.normalize(F.layer_norm(x.float(), x.shape[-1:]), dim=-1)  # [B, T, d] zero mean, unit norm
    return torch.einsum("bqd,bkd->bqk", z, z)  # [B, T, T]


@torch.no_grad()
def thresholded_attend_mask(x: Tensor, anchors: Tensor, threshold: float) -> Tensor:
    """[B, T, T] bool: step t attends anchor j if corr(x_t, x_j) >= threshold (same stream), or j is t's best anchor."""
    sim = same_stream_similarity(x).masked_fill(~anchors.unsqueeze(1), float("-inf"))  # [B, Tq, Tk]
    best = torch.zeros_like(sim, dtype=torch.bool).scatter_(2, sim.argmax(dim=-1, keepdim=True), True)
    return anchors.unsqueeze(1) & ((sim >= threshold) | best)


class AnchorPropagation(nn.Module):
    """ATP for both streams: (a, v, bank, anchors) -> enhanced (a', v'), each [B, T, d]."""

    def __init__(self, d: int, n_heads: int, ffn_mult: int, dropout: float, mode: str, threshold: float):
        super().__init__()
        self.mode = mode
        self.threshold = threshold
        self.block_a = AttentionBlock(d, n_heads, ffn_mult, dropout, cross=True)
        self.block_v = AttentionBlock(d, n_heads, ffn_mult, dropout, cross=True)

    def _attend_mask(self, x: Tensor, anchors: Tensor) -> Tensor:
        if self.mode == "attention":
            return anchors  # [B, Tk] key padding: non-anchors masked
        return thresholded_attend_mask(x, anchors, self.threshold)  # [B, Tq, Tk]

    def forward(self, a: Tensor, v: Tensor, bank: Tensor, anchors: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        bank = masked_fill_steps(bank, anchors)  # [B, T, d] only anchor steps matter
        a2 = self.block_a(a, mask, kv=bank, attn_mask=self._attend_mask(a, anchors))  # [B, T, d]
        v2 = self.block_v(v, mask, kv=bank, attn_mask=self._attend_mask(v, anchors))  # [B, T, d]
        return a2, v2
