"""CLASP forward: shapes, padding invariance, module switches, parameters, gradients, bf16."""

from __future__ import annotations

import pytest
import torch

from clasp_dist.config import LossConfig
from clasp_dist.model import ModelOutput
from clasp_dist.model.losses import compute_loss

from .helpers import BASE, C, batch, build

REFINED = ("cas_a_ref", "cas_v_ref", "video_a_ref", "video_v_ref")
CLASP_PARTS = ("fusion", "atp", "refined")


@pytest.mark.parametrize("lengths,T", [([7], 7), ([20, 13, 5], 20), ([64, 1, 33, 40], 64)])
@pytest.mark.parametrize(
    "variant",
    [BASE, {}, dict(mil_pooling="attentive", propagation="thresholded", prop_threshold=0.2, anchor_fusion="mean")],
)
def test_output_shapes(lengths, T, variant):
    model = build(**variant).eval()
    v, a, mask, labels = batch(lengths, T)
    out = model(v, a, mask)
    B = len(lengths)
    assert isinstance(out, ModelOutput)
    for name in ("cas_a", "cas_v"):
        assert getattr(out, name).shape == (B, T, C)
    for name in ("video_a", "video_v"):
        assert getattr(out, name).shape == (B, C) and getattr(out, name).dtype == torch.float32
    if variant is BASE:
        assert all(getattr(out, n) is None for n in REFINED + ("agreement", "anchor_score", "anchor_mask"))
        assert out.final()[0] is out.cas_a
    else:
        assert out.cas_a_ref.shape == (B, T, C) and out.video_v_ref.shape == (B, C)
        assert out.agreement.shape == out.anchor_score.shape == out.anchor_mask.shape == (B, T)
        assert out.anchor_mask.dtype == torch.bool
        assert out.final()[0] is out.cas_a_ref
        for t in (out.cas_a_ref, out.video_a_ref, out.agreement):
            assert torch.isfinite(t).all()


@pytest.mark.parametrize(
    "variant",
    [BASE, {}, dict(mil_pooling="attentive", propagation="thresholded", prop_threshold=0.1, discrepancy="js")],
)
def test_padding_invariance(variant):
    model = build(**variant).eval()
    v, a, mask, _ = batch([17], 17, seed=3)
    Tpad = 40
    vp = torch.cat([v, torch.randn(1, Tpad - 17, v.shape[-1]) * 5], 1)  # garbage in padded steps too
    ap = torch.cat([a, torch.randn(1, Tpad - 17, a.shape[-1]) * 5], 1)
    mp = torch.arange(Tpad)[None] < 17
    # the padded copy also shares its batch with another, longer video
    v2, a2, _, _ = batch([Tpad], Tpad, seed=9)
    with torch.no_grad():
        o1 = model(v, a, mask)
        o2 = model(torch.cat([vp, v2]), torch.cat([ap, a2]), torch.cat([mp, torch.ones(1, Tpad, dtype=torch.bool)]))
    for name in ("cas_a", "cas_v") + (
        () if variant is BASE else ("cas_a_ref", "cas_v_ref", "agreement", "anchor_score")
    ):
        torch.testing.assert_close(getattr(o2, name)[:1, :17], getattr(o1, name), atol=1e-5, rtol=1e-5)
    for name in ("video_a", "video_v") + (() if variant is BASE else ("video_a_ref", "video_v_ref")):
        torch.testing.assert_close(getattr(o2, name)[:1], getattr(o1, name), atol=1e-5, rtol=1e-5)
    if variant is not BASE:
        assert torch.equal(o2.anchor_mask[:1, :17], o1.anchor_mask)
        assert not o2.anchor_mask[:1, 17:].any()


def test_anchors_only_on_valid_steps_and_at_least_one():
    model = build(local_tau=0.99, csai_global=False).eval()  # local only with an unreachable tau -> fallback
    v, a, mask, labels = batch([30, 9, 1, 22], 30)
    out = model(v, a, mask, labels)
    assert not (out.anchor_mask & ~mask).any()
    assert (out.anchor_mask.sum(1) == 1).all()
    model = build().train()
    out = model(v, a, mask, labels)
    assert not (out.anchor_mask & ~mask).any() and (out.anchor_mask.sum(1) >= 1).all()
    assert (out.agreement[~mask] == 0).all() and (out.anchor_score[~mask] == 0).all()


def _outputs(variant, ref_state, v, a, mask, labels=None):
    model = build(seed=1, **variant)
    missing, unexpected = model.load_state_dict(ref_state, strict=False)
    assert not missing, missing  # every variant's parameters exist in the full model
    model.eval()
    with torch.no_grad():
        return model(v, a, mask, labels)


def test_module_switches_change_outputs():
    full = build(seed=0, window=8, global_ratio=8, local_tau=0.0)
    state = full.state_dict()
    v, a, mask, labels = batch([64, 50], 64, seed=5)
    ref = _outputs({"window": 8, "local_tau": 0.0}, state, v, a, mask)

    def differs(x, y):
        return x is None or y is None or x.shape != y.shape or not torch.allclose(x.float(), y.float(), atol=1e-6)

    off_atp = _outputs({"use_atp": False}, state, v, a, mask)
    assert off_atp.cas_a_ref is None and differs(off_atp.final()[0], ref.final()[0])
    torch.testing.assert_close(off_atp.cas_a, ref.cas_a)  # base path untouched
    base = _outputs(BASE, state, v, a, mask)
    assert base.agreement is None and base.anchor_mask is None
    no_local = _outputs({"window": 8, "csai_local": False}, state, v, a, mask)
    assert differs(no_local.anchor_mask.float(), ref.anchor_mask.float()) and differs(no_local.cas_a_ref, ref.cas_a_ref)
    no_global = _outputs({"window": 8, "local_tau": 0.0, "csai_global": False}, state, v, a, mask)
    assert differs(no_global.anchor_mask.float(), ref.anchor_mask.float()) and differs(
        no_global.cas_v_ref, ref.cas_v_ref
    )
    js = _outputs({"window": 8, "local_tau": 0.0, "discrepancy": "js"}, state, v, a, mask)
    assert differs(js.agreement, ref.agreement)
    am = _outputs({"window": 8, "local_tau": 0.0, "discrepancy": "argmax"}, state, v, a, mask)
    assert set(am.agreement[mask].unique().tolist()) <= {0.0, 1.0} and differs(am.agreement, ref.agreement)
    agr = _outputs({"window": 8, "local_tau": 0.0, "anchor_score": "agreement"}, state, v, a, mask)
    assert differs(agr.anchor_score, ref.anchor_score)
    torch.testing.assert_close(agr.anchor_score, ref.agreement)
    thr = _outputs(
        {"window": 8, "local_tau": 0.0, "propagation": "thresholded", "prop_threshold": 0.3}, state, v, a, mask
    )
    assert differs(thr.cas_a_ref, ref.cas_a_ref)
    mean = _outputs({"window": 8, "local_tau": 0.0, "anchor_fusion": "mean"}, state, v, a, mask)
    assert differs(mean.cas_a_ref, ref.cas_a_ref)
    att = build(seed=0, mil_pooling="attentive").eval()(v, a, mask)
    assert differs(att.video_a, ref.video_a)
    ratio = _outputs({"window": 8, "local_tau": 0.0, "mil_ratio": 2}, state, v, a, mask)
    assert differs(ratio.video_a, ref.video_a)
    # training labels choose MEAE's class set
    lab = _outputs({"window": 8, "local_tau": 0.0}, state, v, a, mask, labels=torch.eye(C)[[3, 4]])
    assert differs(lab.agreement, ref.agreement)


def test_base_model_has_no_clasp_parameters():
    base, full = build(**BASE), build()
    base_names = {n for n, _ in base.named_parameters()}
    full_names = {n for n, _ in full.named_parameters()}
    assert base_names < full_names
    assert not any(n.split(".")[0] in CLASP_PARTS for n in base_names)
    assert {n.split(".")[0] for n in full_names - base_names} == set(CLASP_PARTS)
    # MEAE/CSAI alone add no parameters either
    meae_only = build(use_atp=False)
    assert {n for n, _ in meae_only.named_parameters()} == base_names
    mean = build(anchor_fusion="mean")
    assert not any(n.startswith("fusion.") for n, _ in mean.named_parameters())


@pytest.mark.parametrize("variant", [{}, dict(mil_pooling="attentive", propagation="thresholded", prop_threshold=0.1)])
def test_gradients_reach_every_parameter(variant):
    model = build(**variant).train()
    v, a, mask, labels = batch([24, 11, 18], 24)
    out = model(v, a, mask, labels)
    total, terms = compute_loss(out, labels, mask, LossConfig())
    total.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead, dead
    assert set(terms) >= {"loss", "loss_base", "loss_prop"}


@pytest.mark.parametrize("variant", [BASE, {}])
def test_bf16_autocast_cpu(variant):
    model = build(**variant).eval()
    v, a, mask, labels = batch([20, 12], 20)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(v, a, mask)
    ref = model(v, a, mask)
    assert out.video_a.dtype == torch.float32
    for x in out.final():
        assert torch.isfinite(x.float()).all()
    assert torch.allclose(out.final()[2], ref.final()[2], atol=0.3)


def test_bf16_parameters_take_fp32_batches():
    """DeepSpeed bf16 casts the parameters and leaves buffers (pos_table) in fp32, as done here; the float32
    batch must still go through, backward too (tests/train/test_gpu_path.py does it with a real engine)."""
    model = build().train()
    for param in model.parameters():
        param.data = param.data.to(torch.bfloat16)
    assert model.encoder.pos_table.dtype == torch.float32
    v, a, mask, labels = batch([20, 12], 20)
    out = model(v, a, mask, labels)
    total, _ = compute_loss(out, labels, mask, LossConfig())
    total.backward()
    assert out.cas_a.dtype == torch.bfloat16 and torch.isfinite(total)
    assert all(p.grad is not None for p in model.parameters())


def test_max_len_enforced():
    model = build(max_len=16)
    v, a, mask, _ = batch([17], 17)
    with pytest.raises(ValueError, match="max_len"):
        model(v, a, mask)
