"""DeepSpeed config arithmetic, parameter groups, schedule, EMA (no DeepSpeed process needed)."""

import math

import pytest
import torch

from clasp_dist.config import load_config
from clasp_dist.training.ema import EMA
from clasp_dist.training.engine import deepspeed_config, param_groups, plan_batches, scaled_lr, warmup_cosine


@pytest.mark.parametrize("batch, micro, world, accum", [(16, 8, 1, 2), (16, 8, 2, 1), (32, 4, 2, 4), (8, 8, 1, 1)])
def test_batch_plan_is_consistent(batch, micro, world, accum):
    cfg = load_config([f"train.batch_size={batch}", f"deepspeed.micro_batch_size={micro}"])
    plan = plan_batches(cfg, world)
    assert plan.grad_accum == accum and plan.global_batch_size == batch
    ds = deepspeed_config(cfg, plan)
    assert ds["train_batch_size"] == ds["train_micro_batch_size_per_gpu"] * ds["gradient_accumulation_steps"] * world
    assert "auto" not in str(ds)


def test_batch_plan_rejects_uneven_batches():
    cfg = load_config(["train.batch_size=16", "deepspeed.micro_batch_size=6"])
    with pytest.raises(ValueError, match="train.batch_size"):
        plan_batches(cfg, 1)


@pytest.mark.parametrize("world", [1, 8, 16, 64])
@pytest.mark.parametrize("rule, factor", [("none", lambda r: 1.0), ("linear", lambda r: r), ("sqrt", math.sqrt)])
def test_a_per_worker_batch_grows_with_the_workers_and_scales_the_lr(world, rule, factor):
    cfg = load_config(
        ["train.batch_size=16", "deepspeed.micro_batch_size=4", "deepspeed.grad_accum=2", f"optim.lr_scaling={rule}"]
    )
    plan = plan_batches(cfg, world)
    assert (plan.micro_batch_size, plan.grad_accum, plan.global_batch_size) == (4, 2, 8 * world)
    assert deepspeed_config(cfg, plan)["train_batch_size"] == 8 * world
    assert scaled_lr(cfg, plan) == pytest.approx(cfg.optim.lr * factor(8 * world / 16))
    assert cfg.deepspeed.grad_accum == 2 and cfg.train.batch_size == 16  # derived, never written back


def test_the_lr_is_optim_lr_whenever_the_global_batch_is_the_reference_batch():
    """The default run (config=small, 1 worker, a fixed global batch) keeps its numbers under every rule."""
    for rule in ("none", "linear", "sqrt"):
        cfg = load_config([f"optim.lr_scaling={rule}"])
        plan = plan_batches(cfg, 1)
        assert (plan.micro_batch_size, plan.grad_accum, plan.global_batch_size) == (8, 2, 16)
        assert scaled_lr(cfg, plan) == cfg.optim.lr == 2e-3  # exactly, not approximately
    assert load_config([]).optim.lr_scaling == "none" and load_config([]).deepspeed.grad_accum == 0


def test_a_per_worker_batch_needs_a_micro_batch():
    cfg = load_config(["deepspeed.micro_batch_size=0", "deepspeed.grad_accum=1"])
    with pytest.raises(ValueError, match="deepspeed.grad_accum=1 sets a per-worker batch"):
        plan_batches(cfg, 8)


def test_deepspeed_config_carries_zero_bf16_clip():
    cfg = load_config(["deepspeed.zero_stage=2", "deepspeed.bf16=true", "optim.grad_clip=0.5"])
    ds = deepspeed_config(cfg, plan_batches(cfg, 2))
    assert ds["zero_optimization"]["stage"] == 2 and ds["bf16"]["enabled"] and ds["gradient_clipping"] == 0.5
    assert "optimizer" not in ds  # client AdamW: no JIT-compiled FusedAdam


def test_weight_decay_only_on_weights():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3), torch.nn.Conv1d(3, 2, 3))
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {p.ndim for p in decay["params"]} == {2, 3}
    assert all(p.ndim == 1 for p in no_decay["params"]) and len(no_decay["params"]) == 4


def test_warmup_then_cosine():
    f = warmup_cosine(total_steps=100, warmup_steps=10, min_ratio=0.1)
    values = [f(s) for s in range(100)]
    assert all(a < b for a, b in zip(values[:10], values[1:11]))  # rising during warm-up
    assert values[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))  # then non-increasing
    assert f(100) == pytest.approx(0.1)
    assert values[55] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_ema_tracks_and_restores():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.5)
    start = {k: v.clone() for k, v in ema.shadow.items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    moved = ema.shadow["weight"] - start["weight"]
    assert torch.all(moved > 0) and torch.all(moved < 1.0)  # between the old and the new weights
    clone = EMA(torch.nn.Linear(3, 2), decay=0.5)
    clone.load_state_dict(ema.state_dict())
    assert torch.equal(clone.shadow["weight"], ema.shadow["weight"]) and clone.updates == 1
    with pytest.raises(ValueError, match="differing keys"):
        EMA(torch.nn.Linear(3, 2, bias=False), 0.5).load_state_dict(ema.state_dict())


def test_ema_update_matches_the_formula():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.9)
    before = ema.shadow["weight"].clone()
    with torch.no_grad():
        model.weight.mul_(2.0)
    ema.update(model)
    decay = min(0.9, 2 / 11)  # bias-corrected warm start at step 1
    torch.testing.assert_close(ema.shadow["weight"], decay * before + (1 - decay) * model.weight.detach())


def test_ema_interval_raises_the_decay_to_its_power():
    from clasp_dist.training.ema import ZERO3_EMA_EVERY, ema_interval

    assert ema_interval(0, 0) == ema_interval(0, 2) == 1 and ema_interval(0, 3) == ZERO3_EMA_EVERY
    assert ema_interval(4, 3) == 4
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.99, every=3)
    before = ema.shadow["weight"].clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    ema.update(model)
    assert torch.equal(ema.shadow["weight"], before) and ema.updates == 0  # not yet: every 3rd step
    ema.update(model)
    decay = min(0.99, 4 / 13) ** 3
    torch.testing.assert_close(ema.shadow["weight"], decay * before + (1 - decay) * model.weight.detach())
    assert ema.updates == 1 and ema.state_dict()["steps"] == 3


def test_ema_reads_fp32_even_from_a_bf16_module():
    model = torch.nn.Linear(3, 2).to(torch.bfloat16)
    ema = EMA(model, decay=0.5)
    assert all(v.dtype == torch.float32 for v in ema.shadow.values())
    assert all(v.dtype == torch.float32 for k, v in ema.weights_for(model).items())
