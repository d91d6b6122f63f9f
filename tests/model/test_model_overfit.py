"""The full model overfits a handful of synthetic videos on CPU (training loss falls 10x)."""

from __future__ import annotations

import time

import torch

from clasp_dist.config import LossConfig
from clasp_dist.model.losses import compute_loss

from .helpers import DA, DV, C, build, lengths_mask


def synthetic_videos(n=8, T=32, seed=0):
    """Noise plus each labelled class's prototype over a random span, in both streams."""
    g = torch.Generator().manual_seed(seed)
    proto_v, proto_a = torch.randn(C, DV, generator=g), torch.randn(C, DA, generator=g)
    lengths = torch.randint(T // 2, T + 1, (n,), generator=g)
    mask = lengths_mask(lengths, T)
    v = 0.5 * torch.randn(n, T, DV, generator=g)
    a = 0.5 * torch.randn(n, T, DA, generator=g)
    labels = torch.zeros(n, C)
    for i in range(n):
        for c in torch.randperm(C, generator=g)[: 1 + i % 2].tolist():
            labels[i, c] = 1
            s = int(torch.randint(0, int(lengths[i]) - 6, (1,), generator=g))
            e = s + int(torch.randint(4, 8, (1,), generator=g))
            v[i, s:e] += proto_v[c]
            a[i, s:e] += proto_a[c]
    return v * mask[..., None], a * mask[..., None], mask, labels


def test_full_model_overfits():
    torch.manual_seed(0)
    v, a, mask, labels = synthetic_videos()
    model = build(n_self_layers=1).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    t0, first, last = time.time(), None, None
    for _ in range(150):
        total, _ = compute_loss(model(v, a, mask, labels), labels, mask, LossConfig())
        opt.zero_grad()
        total.backward()
        opt.step()
        first = float(total.detach()) if first is None else first
        last = float(total.detach())
        if last < first / 20:
            break
    assert last < first / 10, (first, last)
    assert time.time() - t0 < 20
