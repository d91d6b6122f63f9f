"""Encoder and ATP parts in isolation: position encoding, masked convs, anchor-only attention."""

from __future__ import annotations

import torch

from clasp_dist.model.atp import AnchorPropagation, thresholded_attend_mask
from clasp_dist.model.classifier import topk_mil
from clasp_dist.model.encoder import sinusoidal_table

from .helpers import build, lengths_mask


def test_position_encoding_breaks_time_symmetry():
    model = build(**dict(use_meae=False, use_atp=False)).eval()
    T = 24
    v = torch.ones(1, T, 16)
    a = torch.ones(1, T, 8)
    out = model(v, a, torch.ones(1, T, dtype=torch.bool))
    assert not torch.allclose(out.cas_a[0, 8], out.cas_a[0, 15], atol=1e-4)  # same input, different position
    tab = sinusoidal_table(10, 6)
    assert torch.allclose(tab[0], torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0]))
    assert torch.allclose(tab[3, 0], torch.sin(torch.tensor(3.0)))


def test_topk_mil_values():
    cas = torch.tensor([[[1.0], [5.0], [3.0], [100.0]], [[2.0], [4.0], [6.0], [8.0]]])  # [2, 4, 1]
    mask = lengths_mask([3, 4], 4)
    torch.testing.assert_close(topk_mil(cas, mask, 2), torch.tensor([[5.0], [7.0]]))  # k = 1 and 2
    torch.testing.assert_close(topk_mil(cas, mask, 1), torch.tensor([[3.0], [5.0]]))  # k = 3 and 4


def _atp(mode, threshold=0.0):
    torch.manual_seed(0)
    return AnchorPropagation(16, 2, 2, 0.0, mode, threshold).eval()


def test_atp_attends_to_anchors_only():
    torch.manual_seed(1)
    B, T, d = 2, 12, 16
    a, v, bank = torch.randn(B, T, d), torch.randn(B, T, d), torch.randn(B, T, d)
    mask = lengths_mask([12, 9], T)
    anchors = torch.zeros(B, T, dtype=torch.bool)
    anchors[0, [1, 7]] = anchors[1, 4] = True
    for mode in ("attention", "thresholded"):
        atp = _atp(mode, 0.1)
        a1, v1 = atp(a, v, bank, anchors, mask)
        bank2 = torch.where(anchors[..., None], bank, torch.randn(B, T, d) * 10)
        a2, v2 = atp(a, v, bank2, anchors, mask)
        torch.testing.assert_close(a1, a2)
        torch.testing.assert_close(v1, v2)
        assert not torch.allclose(a1, a)  # it did propagate something


def test_thresholded_mask_keeps_best_anchor():
    torch.manual_seed(2)
    x = torch.randn(1, 6, 8)
    anchors = torch.tensor([[True, False, True, True, False, False]])
    m = thresholded_attend_mask(x, anchors, threshold=2.0)  # nothing passes the threshold
    assert (m.sum(-1) == 1).all() and not m[..., ~anchors[0]].any()
    m_all = thresholded_attend_mask(x, anchors, threshold=-2.0)  # everything passes
    assert torch.equal(m_all, anchors[:, None, :].expand(1, 6, 6))
