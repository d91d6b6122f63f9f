"""Exponential moving average of weights, used for evaluation (decay 0.999 by default).

Under bf16 at ZeRO-1/2 DeepSpeed keeps the fp32 master weights split over the ranks: each rank holds a
slice of the flat fp32 partition and owns a slice of some parameters. The EMA averages exactly that slice
on each rank (`owned_fp32_weights`): an update is local arithmetic, no communication. The whole average
is assembled (one all-reduce) only where whole weights are needed: validation, checkpoint, export
(`gathered`, `state_dict`, `weights_for`). Elementwise, the average is the one a whole-weights EMA would
compute, value for value. Under ZeRO-3 each update still reads gathered whole weights (every
ZERO3_EMA_EVERY steps by default).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .engine import fp32_weights

ZERO3_EMA_EVERY = 10
"""Default optimizer steps between EMA updates under ZeRO-3, where each update gathers the whole model."""


def ema_interval(every: int, zero_stage: int) -> int:
    """optim.ema_every resolved: 0 = every step, or every ZERO3_EMA_EVERY steps under ZeRO-3."""
    if every > 0:
        return every
    return ZERO3_EMA_EVERY if zero_stage == 3 else 1


def _owns_master_slice(param: torch.nn.Parameter) -> bool:
    """True when DeepSpeed keeps `param`'s fp32 master in a flat partition split over the ranks (bf16 at
    ZeRO-1/2): this rank holds only `param._hp_mapping`'s slice of it (None when it holds none)."""
    return param.dtype != torch.float32 and hasattr(param, "_hp_mapping") and not hasattr(param, "ds_id")


def owned_fp32_weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The fp32 master weights this rank holds, without communication, keyed like `module.state_dict()`.

    Under bf16 ZeRO-1/2: each parameter's slice in this rank's fp32 partition (a 1-D view; parameters this
    rank holds none of are absent). Otherwise the whole parameter. Floating buffers whole, as fp32. Under
    ZeRO-3 (no rank-local slice view here) this is `engine.fp32_weights`, a collective."""
    if any(hasattr(p, "ds_id") for p in module.parameters()):
        return fp32_weights(module)
    out = {}
    for name, param in module.named_parameters():
        if not _owns_master_slice(param):
            out[name] = param if param.dtype == torch.float32 else param.detach().float()  # no copy when fp32
        elif param._hp_mapping is not None:
            out[name] = param._hp_mapping.hp_fragment  # [n]: this rank's slice of the flattened master
    for name, buffer in module.named_buffers():
        if buffer.dtype.is_floating_point:
            out[name] = buffer.float()
    return out


class EMA:
    """An fp32 shadow of the fp32 master weights (floating parameters and buffers), on the model's device.

    The shadow follows the fp32 masters (`read`, default `owned_fp32_weights`: the rank's own slice under
    bf16 ZeRO-1/2, never the bf16 module weights). Updated with fused foreach ops every `every` optimizer
    steps, with the decay raised to that power so the average spans the same number of steps.
    `gathered`, `state_dict` and `weights_for` assemble whole weights: collectives every rank joins when
    the shadow is split over the ranks.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        decay: float,
        every: int = 1,
        read: Callable[[torch.nn.Module], dict[str, torch.Tensor]] = owned_fp32_weights,
    ):
        if every < 1:
            raise ValueError(f"EMA interval must be >= 1 optimizer step, got {every}")
        self.decay, self.every, self._read = decay, every, read
        self.keys = [k for k, v in model.state_dict().items() if v.dtype.is_floating_point]
        """Every key of the whole average (a rank's own shadow may hold fewer)."""
        self._split = {
            name: p for name, p in model.named_parameters() if _owns_master_slice(p) and read is owned_fp32_weights
        }
        """Parameters whose master (and so shadow) is split over the ranks."""
        wanted = set(self.keys)  # persistent entries only, as in the state dict
        self.shadow = {k: v.detach().clone() for k, v in read(model).items() if k in wanted}
        self.steps = 0
        """Optimizer steps seen (the bias correction counts steps, not updates)."""

    @property
    def updates(self) -> int:
        return self.steps // self.every

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Call after every optimizer step (on every rank: under ZeRO-3 the read is a collective)."""
        self.steps += 1
        if self.steps % self.every:
            return
        # Bias-corrected warm start: short runs do not evaluate an average dominated by the init.
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps)) ** self.every
        current = self._read(model)
        keys = list(self.shadow)
        torch._foreach_lerp_([self.shadow[k] for k in keys], [current[k] for k in keys], 1.0 - decay)

    @torch.no_grad()
    def gathered(self) -> dict[str, torch.Tensor]:
        """The whole average, keyed like the model's state dict, on the shadow's device. With a split shadow
        one all-reduce of one flat buffer (each rank adds its own slices into zeros): every rank calls it."""
        full = {k: v for k, v in self.shadow.items() if k not in self._split}
        if not self._split:
            return full
        import deepspeed.comm as dist

        names = list(self._split)
        sizes = [self._split[n].numel() for n in names]
        device = next(iter(self.shadow.values())).device
        flat = torch.zeros(sum(sizes), dtype=torch.float32, device=device)  # [all split params]
        offset = 0
        for name, size in zip(names, sizes):
            mapping = self._split[name]._hp_mapping
            if mapping is not None:
                start = offset + mapping.lp_fragment_address.start
                flat[start : start + mapping.lp_fragment_address.numel].copy_(self.shadow[name])
            offset += size
        dist.all_reduce(flat, group=self._split[names[0]]._dp_group)
        for name, piece in zip(names, flat.split(sizes)):
            full[name] = piece.view(self._split[name].shape)
        return full

    def state_dict(self) -> dict:
        """The whole average on the CPU (a collective when the shadow is split: every rank calls it)."""
        return {
            "decay": self.decay,
            "updates": self.updates,
            "steps": self.steps,
            "shadow": {k: v.cpu() for k, v in self.gathered().items()},
        }

    def load_state_dict(self, state: dict) -> None:
        """Load a whole average (`state_dict`); each rank keeps its own slices of split parameters."""
        missing = set(self.keys) ^ set(state["shadow"])
        if missing:
            raise ValueError(f"EMA state does not match the model: differing keys {sorted(missing)[:5]}")
        self.steps = int(state.get("steps", state["updates"]))
        for key, value in state["shadow"].items():
            if key not in self.shadow:
                continue
            if key in self._split:
                address = self._split[key]._hp_mapping.lp_fragment_address
                value = value.flatten().narrow(0, address.start, address.numel)  # [n]: this rank's slice
            self.shadow[key].copy_(value)

    def weights_for(self, model: torch.nn.Module, state: dict | None = None) -> dict:
        """A full fp32 CPU state dict for `model`: the averaged floats (from `state`, a `state_dict()`, when
        given; else gathered: a collective), non-float buffers from the model."""
        averaged = state["shadow"] if state is not None else self.gathered()
        full = {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not v.dtype.is_floating_point}
        full.update({k: v.cpu().clone() for k, v in averaged.items()})
        return full
