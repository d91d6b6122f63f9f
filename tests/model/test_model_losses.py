"""compute_loss: L_base + lambda_p * L_prop with named terms."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clasp_dist.config import LossConfig
from clasp_dist.model import ModelOutput
from clasp_dist.model.losses import LossMeter, compute_loss


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
    assert "loss_prop" not in terms and float(terms["loss"]) == float(terms["loss_base"]) == float(want)
    # terms stay 0-d detached tensors: reading them is the caller's (once per log interval) host sync
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 and not v.requires_grad for v in terms.values())


def test_lambda_p_weights_prop_loss():
    out, y = _out(True), torch.tensor([[1.0, 0, 0], [0, 1.0, 1.0]])
    t1, terms1 = compute_loss(out, y, None, LossConfig(lambda_p=1.0))
    t3, terms3 = compute_loss(out, y, None, LossConfig(lambda_p=3.0))
    prop = F.binary_cross_entropy_with_logits(out.video_a_ref, y) + F.binary_cross_entropy_with_logits(
        out.video_v_ref, y
    )
    assert abs(terms1["loss_prop"] - float(prop)) < 1e-6
    torch.testing.assert_close(t3 - t1, 2 * prop)
    torch.testing.assert_close(t1, torch.tensor(terms1["loss_base"]) + prop)


def test_loss_meter_means_over_micro_batches():
    meter = LossMeter()
    assert meter.means() == {}
    for value in (1.0, 2.0, 6.0):
        meter.add({"loss": torch.tensor(value), "loss_base": torch.tensor(value / 2)})
    assert meter.means() == {"loss": 3.0, "loss_base": 1.5}
    meter.reset()
    meter.add({"loss": torch.tensor(5.0), "loss_base": torch.tensor(0.0)})
    assert meter.means() == {"loss": 5.0, "loss_base": 0.0}
