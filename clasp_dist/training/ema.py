"""Exponential moving average of weights, used for evaluation (SPEC: decay 0.999)."""

from __future__ import annotations

from typing import Callable

import torch

from .engine import fp32_weights

ZERO3_EMA_EVERY = 10
"""Default optimizer steps between EMA updates under ZeRO-3, where each update gathers the whole model."""


def ema_interval(every: int, zero_stage: int) -> int:
    """optim.ema_every resolved: 0 = every step, or every ZERO3_EMA_EVERY steps under ZeRO-3."""
    if every > 0:
        return every
    return ZERO3_EMA_EVERY if zero_stage == 3 else 1


class EMA:
    """An fp32 shadow of every floating parameter and buffer, on the model's device.

    The shadow follows the fp32 master weights (`read`, default `engine.fp32_weights`: DeepSpeed's
    masters under bf16 or ZeRO-3, where reading them is a collective every rank joins), never the
    bf16 module weights. Updated with fused foreach ops every `every` optimizer steps, with the decay
    raised to that power so the average spans the same number of steps.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        decay: float,
        every: int = 1,
        read: Callable[[torch.nn.Module], dict[str, torch.Tensor]] = fp32_weights,
    ):
        if every < 1:
            raise ValueError(f"EMA interval must be >= 1 optimizer step, got {every}")
        self.decay, self.every, self._read = decay, every, read
        self.shadow = {k: v.clone() for k, v in read(model).items()}
        self.steps = 0
        """Optimizer steps seen (the bias correction counts steps, not updates)."""

    @property
    def updates(self) -> int:
        return self.steps // self.every

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Call after every optimizer step (on every rank: the read may be a collective)."""
        self.steps += 1
        if self.steps % self.every:
            return
        # Bias-corrected warm start: short runs do not evaluate an average dominated by the init.
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps)) ** self.every
        current = self._read(model)
        keys = list(self.shadow)
        torch._foreach_lerp_([self.shadow[k] for k in keys], [current[k] for k in keys], 1.0 - decay)

    def state_dict(self) -> dict:
        return {
            "decay": self.decay,
            "updates": self.updates,
            "steps": self.steps,
            "shadow": {k: v.cpu() for k, v in self.shadow.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise ValueError(f"EMA state does not match the model: differing keys {sorted(missing)[:5]}")
        self.steps = int(state.get("steps", state["updates"]))
        for key, value in state["shadow"].items():
            self.shadow[key].copy_(value)

    def weights_for(self, model: torch.nn.Module) -> dict:
        """A full fp32 CPU state dict for `model`: the averaged floats, non-float buffers from the model."""
        full = {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not v.dtype.is_floating_point}
        full.update({k: v.cpu().clone() for k, v in self.shadow.items()})
        return full
