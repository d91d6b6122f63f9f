"""Exponential moving average of weights, used for evaluation (SPEC: decay 0.999)."""
from __future__ import annotations

import contextlib

import torch


class EMA:
    """Keeps an fp32 shadow copy of every floating parameter and buffer, on the model's device.

    Under ZeRO-3 the parameters are partitioned; `gather` (a context manager factory, e.g.
    `deepspeed.zero.GatheredParameters`) makes them whole while the shadow is read or updated.
    """

    def __init__(self, model: torch.nn.Module, decay: float, gather=None):
        self.decay = decay
        self._gather = gather or (lambda params: contextlib.nullcontext())
        with self._gather(list(model.parameters())):
            self.shadow = {k: v.detach().float().clone() for k, v in model.state_dict().items()
                           if v.dtype.is_floating_point}
        self.updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        # Bias-corrected warm start: short runs do not evaluate an average dominated by the init.
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with self._gather(list(model.parameters())):
            for key, value in model.state_dict().items():
                if key in self.shadow:
                    self.shadow[key].mul_(decay).add_(value.detach().float(), alpha=1 - decay)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": {k: v.cpu() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise ValueError(f"EMA state does not match the model: differing keys {sorted(missing)[:5]}")
        self.updates = int(state["updates"])
        for key, value in state["shadow"].items():
            self.shadow[key].copy_(value)

    def weights_for(self, model: torch.nn.Module) -> dict:
        """A full state dict for `model` with the averaged floats (non-float buffers from the model)."""
        with self._gather(list(model.parameters())):
            full = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        full.update({k: v.cpu().clone() for k, v in self.shadow.items()})
        return full
