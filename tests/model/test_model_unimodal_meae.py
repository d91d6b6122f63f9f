"""MEAE on unimodal heads (model.meae_evidence / model.meae_confidence): shapes, loss, isolation, identity."""

from __future__ import annotations

import pytest
import torch

from clasp_dist.config import LossConfig
from clasp_dist.model import class_set, mutual_event_agreement, select_anchors
from clasp_dist.model.losses import compute_loss

from .helpers import C, batch, build
from .test_model_overfit import synthetic_videos

UNI = dict(meae_evidence="unimodal")


@pytest.mark.parametrize("knobs", [UNI, dict(meae_confidence="unimodal"), dict(UNI, meae_confidence="unimodal")])
def test_unimodal_heads_shapes_and_loss_term(knobs):
    v, a, mask, labels = batch([20, 13], 20)
    out = build(**knobs)(v, a, mask, labels)
    for name in ("cas_a_uni", "cas_v_uni"):
        assert getattr(out, name).shape == (2, 20, C)
    for name in ("video_a_uni", "video_v_uni"):
        assert getattr(out, name).shape == (2, C)
    assert out.agreement.shape == out.anchor_score.shape == (2, 20)
    cfg = LossConfig(lambda_u=0.5)
    total, terms = compute_loss(out, labels, mask, cfg)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    uni = bce(out.video_a_uni, labels) + bce(out.video_v_uni, labels)
    torch.testing.assert_close(terms["loss_uni"], uni.detach())
    torch.testing.assert_close(total, terms["loss_base"] + terms["loss_prop"] + 0.5 * uni)


def _reference_fused_forward(model, v, a, mask, labels):
    """CLASP's forward as it was before unimodal evidence existed, composed from its public parts."""
    cfg = model.cfg
    ea, ev = model.encoder(v, a, mask)  # [B, T, d] each, after the cross-modal block
    cas_a, cas_v, video_a, video_v = model.base(ea, ev, mask)
    K = class_set(labels, video_a, video_v, cfg.inference_class_threshold)
    agreement, alpha = mutual_event_agreement(cas_a, cas_v, mask, K, cfg.discrepancy, cfg.anchor_score)
    anchors = select_anchors(
        alpha, mask, cfg.csai_global, cfg.global_ratio, cfg.csai_local, cfg.window, cfg.local_tau, cfg.local_tau_mode
    )
    a2, v2 = model.atp(ea, ev, model.fusion(ea, ev), anchors, mask)
    return (cas_a, cas_v, video_a, video_v, agreement, alpha, anchors, *model.refined(a2, v2, mask))


@pytest.mark.parametrize("labelled", [True, False])
def test_fused_is_bit_identical_to_the_original_forward(labelled):
    model = build(meae_evidence="fused", meae_confidence="fused").eval()
    assert not any(n.startswith("unimodal.") for n, _ in model.named_parameters())
    v, a, mask, labels = batch([20, 13, 4], 20)
    labels = labels if labelled else None
    out = model(v, a, mask, labels)
    assert out.cas_a_uni is None and out.video_v_uni is None
    got = (out.cas_a, out.cas_v, out.video_a, out.video_v, out.agreement, out.anchor_score, out.anchor_mask)
    got += (out.cas_a_ref, out.cas_v_ref, out.video_a_ref, out.video_v_ref)
    for x, ref in zip(got, _reference_fused_forward(model, v, a, mask, labels), strict=True):
        assert torch.equal(x, ref)


def test_unimodal_heads_leave_the_other_modules_initial_weights_unchanged():
    fused, uni = build(seed=3).state_dict(), build(seed=3, **UNI).state_dict()
    extra = set(uni) - set(fused)
    assert extra and all(k.startswith("unimodal.") for k in extra)
    assert all(torch.equal(fused[k], uni[k]) for k in fused)


def test_each_unimodal_head_reads_its_own_modality_only():
    model = build(**UNI).eval()
    v, a, mask, labels = batch([20, 13], 20)
    ref = model(v, a, mask, labels)
    out = model(v, a + torch.randn_like(a) * mask[..., None], mask, labels)  # audio perturbed
    valid = mask[..., None].expand_as(ref.cas_v)
    assert torch.equal(out.cas_v_uni[valid], ref.cas_v_uni[valid])  # the visual-only head does not see audio
    assert not torch.allclose(out.cas_a_uni[valid], ref.cas_a_uni[valid])
    assert not torch.allclose(out.cas_v[valid], ref.cas_v[valid])  # the fused visual head does
    vis = model(v + torch.randn_like(v) * mask[..., None], a, mask, labels)  # visual perturbed
    assert torch.equal(vis.cas_a_uni[valid], ref.cas_a_uni[valid])


def test_agreement_and_confidence_read_the_chosen_heads():
    v, a, mask, labels = batch([20, 13], 20)
    K = labels > 0.5
    for evidence, confidence in (("unimodal", "fused"), ("fused", "unimodal"), ("unimodal", "unimodal")):
        out = build(meae_evidence=evidence, meae_confidence=confidence).eval()(v, a, mask, labels)
        heads = {"fused": (out.cas_a, out.cas_v), "unimodal": (out.cas_a_uni, out.cas_v_uni)}
        agreement, _ = mutual_event_agreement(*heads[evidence], mask, K)
        torch.testing.assert_close(out.agreement, agreement, rtol=0, atol=0)
        pa, pv = (torch.sigmoid(x.float()) for x in heads[confidence])
        conf = torch.sqrt(pa * pv).masked_fill(~K[:, None], 0.0).amax(-1) * mask
        torch.testing.assert_close(out.anchor_score, agreement * conf)


def test_unimodal_loss_trains_heads_and_self_layers_not_the_cross_block():
    model = build(**UNI).train()
    v, a, mask, labels = batch([24, 11, 18], 24)
    out = model(v, a, mask, labels)
    out.video_a_uni.add(out.video_v_uni).mean().backward()  # the unimodal heads' outputs alone
    grads = {n: p.grad is not None and bool(p.grad.abs().sum() > 0) for n, p in model.named_parameters()}
    assert all(grads[n] for n in grads if n.startswith(("unimodal.", "encoder.self_", "encoder.embed_")))
    assert not any(grads[n] for n in grads if n.startswith(("encoder.cross_", "base.", "atp.", "refined.")))
    model.zero_grad(set_to_none=True)
    total, _ = compute_loss(model(v, a, mask, labels), labels, mask, LossConfig())
    total.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead, dead


def test_unimodal_heads_overfit_with_video_labels():
    torch.manual_seed(0)
    v, a, mask, labels = synthetic_videos()
    model = build(n_self_layers=1, **UNI).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        total, terms = compute_loss(model(v, a, mask, labels), labels, mask, LossConfig())
        opt.zero_grad()
        total.backward()
        opt.step()
        first = float(terms["loss_uni"]) if first is None else first
        if float(terms["loss_uni"]) < first / 20:
            break
    assert float(terms["loss_uni"]) < first / 10, (first, float(terms["loss_uni"]))
