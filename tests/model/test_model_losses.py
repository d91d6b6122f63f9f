"""compute_loss: L_base + lambda_p * L_prop with named terms."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from clasp_dist.config import LossConfig
from clasp_dist.losses import compute_loss
from clasp_dist.model import ModelOutput


def _out(refined: bool) -> ModelOutput:
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    out = ModelOutput(cas_a=r(2, 5, 3), cas_v=r(2, 5, 3), video_a=r(2, 3), video_v=r(2, 3))
    if refined:
        out.cas_a_ref, out.cas_v_ref, out.video_a_ref, out.video_v_ref = r(2, 5, 3), r(2, 5, 3), r(2, 3), r(2, 3)
    return out


def test_base_only_loss():
    out, y = _out(False), torch.tensor([[1.0, 0, 0], [0, 1.0, 1.0]])
    total, terms = compute_loss(out, y, None, LossConfig())
    want = F.binary_cross_entropy_with_logits(out.video_a, y) + F.binary_cross_entropy_with_logits(out.video_v, y)
    torch.testing.assert_close(total, want)
    assert "loss_prop" not in terms and terms["loss"] == terms["loss_base"] == float(want)
    assert all(isinstance(v, float) for v in terms.values())


def test_lambda_p_weights_prop_loss():
    out, y = _out(True), torch.tensor([[1.0, 0, 0], [0, 1.0, 1.0]])
    t1, terms1 = compute_loss(out, y, None, LossConfig(lambda_p=1.0))
    t3, terms3 = compute_loss(out, y, None, LossConfig(lambda_p=3.0))
    prop = F.binary_cross_entropy_with_logits(out.video_a_ref, y) + F.binary_cross_entropy_with_logits(out.video_v_ref, y)
    assert abs(terms1["loss_prop"] - float(prop)) < 1e-6
    torch.testing.assert_close(t3 - t1, 2 * prop)
    torch.testing.assert_close(t1, torch.tensor(terms1["loss_base"]) + prop)
