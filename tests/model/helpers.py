"""Shared builders for the model tests (small configs, random batches)."""

from __future__ import annotations

import torch

from clasp_dist.config import ModelConfig
from clasp_dist.model import CLASP

DV, DA, C = 16, 8, 5


def small_cfg(**kw) -> ModelConfig:
    base = dict(d_model=32, n_heads=2, n_self_layers=2, dropout=0.0, window=8)
    base.update(kw)
    return ModelConfig(**base)


BASE = dict(use_meae=False, use_atp=False)


def build(seed: int = 0, **kw) -> CLASP:
    torch.manual_seed(seed)
    return CLASP(small_cfg(**kw), DV, DA, C)


def lengths_mask(lengths, T: int) -> torch.Tensor:
    return torch.arange(T)[None, :] < torch.as_tensor(lengths)[:, None]  # [B, T]


def batch(lengths, T: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    B = len(lengths)
    mask = lengths_mask(lengths, T)
    v = torch.randn(B, T, DV, generator=g) * mask[..., None]
    a = torch.randn(B, T, DA, generator=g) * mask[..., None]
    labels = torch.zeros(B, C)
    labels[torch.arange(B), torch.arange(B) % C] = 1.0
    return v, a, mask, labels
