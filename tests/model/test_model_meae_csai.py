"""MEAE agreement/anchor scores and CSAI anchor selection, tested directly."""

from __future__ import annotations

import math

import pytest
import torch

from clasp_dist.model import (
    class_set,
    global_anchors,
    inference_class_set,
    local_anchors,
    mutual_event_agreement,
    select_anchors,
)

from .helpers import lengths_mask


@pytest.mark.parametrize("disc", ["l1", "js", "argmax"])
def test_identical_predictions_agree_fully(disc):
    torch.manual_seed(0)
    cas = torch.randn(3, 12, 6) * 3
    mask = lengths_mask([12, 7, 1], 12)
    K = torch.zeros(3, 6, dtype=torch.bool)
    K[0, 1] = K[1, [2, 4]] = K[2, 0] = True
    agr, alpha = mutual_event_agreement(cas, cas.clone(), mask, K, disc)
    torch.testing.assert_close(agr[mask], torch.ones(int(mask.sum())), atol=1e-6, rtol=0)
    assert (agr[~mask] == 0).all()
    conf = torch.sigmoid(cas).masked_fill(~K[:, None], 0).amax(-1)  # sqrt(P*P) = P
    torch.testing.assert_close(alpha[mask], conf[mask], atol=1e-6, rtol=0)


def test_l1_discrepancy_value_and_single_class():
    cas_a = torch.tensor([[[0.0, 5.0], [2.0, -1.0]]])  # [1, 2, 2]
    cas_v = torch.tensor([[[0.0, -5.0], [-2.0, 3.0]]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    K = torch.tensor([[True, False]])
    agr, alpha = mutual_event_agreement(cas_a, cas_v, mask, K, "l1", "agreement_confidence")
    pa, pv = torch.sigmoid(cas_a[..., 0]), torch.sigmoid(cas_v[..., 0])
    torch.testing.assert_close(agr, 1 - (pa - pv).abs())
    torch.testing.assert_close(alpha, agr * torch.sqrt(pa * pv))
    agr2, alpha2 = mutual_event_agreement(cas_a, cas_v, mask, K, "l1", "agreement")
    torch.testing.assert_close(alpha2, agr2)


def test_js_and_argmax_disagreement():
    mask = torch.ones(1, 1, dtype=torch.bool)
    K = torch.tensor([[True, True]])
    a = torch.tensor([[[20.0, -20.0]]])
    v = torch.tensor([[[-20.0, 20.0]]])
    agr_js, _ = mutual_event_agreement(a, v, mask, K, "js")
    assert agr_js.item() == pytest.approx(0.0, abs=1e-4)  # disjoint distributions: JS = ln 2 -> D = 1
    agr_am, _ = mutual_event_agreement(a, v, mask, K, "argmax")
    assert agr_am.item() == 0.0
    # background wins in both streams -> argmax agrees even though class logits differ
    agr_bg, _ = mutual_event_agreement(a - 40, v - 40, mask, K, "argmax")
    assert agr_bg.item() == 1.0


def test_class_sets():
    video_a = torch.tensor([[3.0, -3.0, 0.0], [-9.0, -8.0, -9.0]])
    video_v = torch.tensor([[3.0, -3.0, -1.0], [-9.0, -8.5, -9.0]])
    pred = inference_class_set(video_a, video_v, 0.1)
    assert pred.tolist() == [[True, False, True], [False, True, False]]
    p = torch.sqrt(torch.sigmoid(video_a) * torch.sigmoid(video_v))
    assert pred[0, 2].item() == (p[0, 2] >= 0.1).item()
    labels = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    K = class_set(labels, video_a, video_v, 0.1)
    assert K[0].tolist() == [False, True, False]  # labels win
    assert K[1].tolist() == pred[1].tolist()  # label-less row falls back to predictions


@pytest.mark.parametrize("ratio", [1, 3, 8])
def test_global_anchor_counts(ratio):
    torch.manual_seed(1)
    lengths = [40, 17, 1, 8]
    mask = lengths_mask(lengths, 40)
    alpha = torch.rand(4, 40)
    g = global_anchors(alpha, mask, ratio)
    assert g.sum(1).tolist() == [math.ceil(n / ratio) for n in lengths]
    assert not (g & ~mask).any()
    for b, n in enumerate(lengths):  # they are the top steps
        top = torch.topk(alpha[b, :n], math.ceil(n / ratio)).indices
        assert set(top.tolist()) == set(torch.nonzero(g[b]).flatten().tolist())


def test_local_anchor_windows_and_tau():
    mask = lengths_mask([10, 5], 10)
    alpha = torch.tensor(
        [[0.0, 0.5, 0.2, 0.0, 0.05, 0.3, 0.9, 0.0, 0.0, 0.01], [0.2, 0.0, 0.0, 0.15, 0.01, 9.0, 9.0, 9.0, 9.0, 9.0]]
    )
    loc = local_anchors(alpha, mask, window=4, tau=0.1, tau_mode="absolute")
    # video 0 windows: [0..3] best 1 (0.5); [4..7] best 6 (0.9); [8..9] best 0.01 < tau
    assert torch.nonzero(loc[0]).flatten().tolist() == [1, 6]
    # video 1: windows [0..3] best 0 (0.2); [4] 0.01 < tau; padded 9.0s never chosen
    assert torch.nonzero(loc[1]).flatten().tolist() == [0]
    # a non-prefix mask: windows count valid steps only
    m2 = torch.tensor([[True, False, True, True, False, True]])
    a2 = torch.tensor([[0.2, 5.0, 0.3, 0.1, 5.0, 0.4]])
    assert torch.nonzero(local_anchors(a2, m2, 2, 0.0, "absolute")[0]).flatten().tolist() == [2, 5]


def test_select_anchors_union_and_fallback():
    mask = lengths_mask([16, 6], 16)
    torch.manual_seed(2)
    alpha = torch.rand(2, 16) * 0.05
    alpha[0, 3] = 0.5
    both = select_anchors(alpha, mask, True, 8, True, 4, 0.1, "absolute")
    g = global_anchors(alpha, mask, 8)
    loc = local_anchors(alpha, mask, 4, 0.1, "absolute")
    assert torch.equal(both, g | loc)
    only_local = select_anchors(alpha, mask, False, 8, True, 4, 0.1, "absolute")
    assert torch.nonzero(only_local[0]).flatten().tolist() == [3]
    assert only_local[1].sum() == 1 and only_local[1, :6].any()  # fallback: best valid step
    assert only_local[1].nonzero().item() == int(alpha[1, :6].argmax())


def test_relative_tau_is_comparable_across_anchor_scores():
    """The default relative floor (min + tau (max - min) per video) picks the same local anchors whether the score
    lives near 0.01 (agreement x confidence early in training) or near 0.99 (agreement alone); an absolute tau
    gives one no local anchor and the other one per window."""
    torch.manual_seed(3)
    mask = lengths_mask([32, 20], 32)
    shape = torch.rand(2, 32) ** 4  # peaked: some windows hold no high step
    low, high = 0.02 * shape, 0.98 + 0.02 * shape  # same ranking, different ranges
    rel_low, rel_high = local_anchors(low, mask, 8, 0.5), local_anchors(high, mask, 8, 0.5)
    assert torch.equal(rel_low, rel_high) and 0 < rel_low.sum() < 7
    for b, n in enumerate([32, 20]):  # exactly the windows whose best step clears the video's floor
        x = shape[b, :n]
        floor = x.min() + 0.5 * (x.max() - x.min())
        want = [
            w * 8 + int(x[w * 8 : (w + 1) * 8].argmax())
            for w in range((n + 7) // 8)
            if x[w * 8 : (w + 1) * 8].max() >= floor
        ]
        assert torch.nonzero(rel_low[b]).flatten().tolist() == want
    assert local_anchors(low, mask, 8, 0.1, "absolute").sum() == 0
    assert local_anchors(high, mask, 8, 0.1, "absolute").sum() == 4 + 3


def test_thresholded_propagation_compares_same_stream_features():
    """The propagation floor compares a step with the anchor step in the same stream (correlation after a
    parameter-free LayerNorm), not with the fused anchor feature of another space: with two
    groups of steps, each step keeps only its own group's anchor, whatever the fused bank holds."""
    from clasp_dist.model.atp import same_stream_similarity, thresholded_attend_mask

    torch.manual_seed(0)
    d = 32
    proto = torch.randn(2, d) * 3
    x = torch.cat([proto[0].expand(5, d), proto[1].expand(5, d)])[None] + 0.3 * torch.randn(1, 10, d)  # [1, 10, d]
    x = x + 7.0  # a shared offset, as after a ReLU: raw cosines would all be near 1
    anchors = torch.zeros(1, 10, dtype=torch.bool)
    anchors[0, [2, 7]] = True
    sim = same_stream_similarity(x)
    assert sim.shape == (1, 10, 10) and torch.allclose(sim.diagonal(dim1=1, dim2=2), torch.ones(1, 10), atol=1e-5)
    m = thresholded_attend_mask(x, anchors, threshold=0.5)
    want = torch.zeros(1, 10, 10, dtype=torch.bool)
    want[0, :5, 2] = want[0, 5:, 7] = True
    assert torch.equal(m, want)
