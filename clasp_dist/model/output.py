"""ModelOutput: the tensors one CLASP forward pass returns (no losses, no decoding)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor


@dataclass
class ModelOutput:
    """Per-step class activation sequences and video logits, base and refined.

    cas_* are logits [B, T, C] (padded steps hold arbitrary values: always read them with the mask);
    video_* are MIL logits [B, C] in float32. Refined fields are None when ATP is off; *_uni fields
    are None unless MEAE reads unimodal heads; agreement, anchor_score and anchor_mask are None when MEAE (resp.
    CSAI) is off.
    """

    cas_a: Tensor  # [B, T, C]
    cas_v: Tensor  # [B, T, C]
    video_a: Tensor  # [B, C]
    video_v: Tensor  # [B, C]
    cas_a_ref: Tensor | None = None  # [B, T, C]
    cas_v_ref: Tensor | None = None  # [B, T, C]
    video_a_ref: Tensor | None = None  # [B, C]
    video_v_ref: Tensor | None = None  # [B, C]
    cas_a_uni: Tensor | None = None  # [B, T, C] unimodal heads (before the cross-modal block), for MEAE
    cas_v_uni: Tensor | None = None  # [B, T, C]
    video_a_uni: Tensor | None = None  # [B, C]
    video_v_uni: Tensor | None = None  # [B, C]
    agreement: Tensor | None = None  # [B, T] s_t in [0, 1], 0 on padded steps
    anchor_score: Tensor | None = None  # [B, T] alpha_t, 0 on padded steps
    anchor_mask: Tensor | None = None  # [B, T] bool, never True on padded steps

    @property
    def refined(self) -> bool:
        return self.cas_a_ref is not None

    def final(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(cas_a, cas_v, video_a, video_v): refined when ATP ran, else base."""
        if self.refined:
            return self.cas_a_ref, self.cas_v_ref, self.video_a_ref, self.video_v_ref
        return self.cas_a, self.cas_v, self.video_a, self.video_v

    def to(self, device) -> ModelOutput:
        return ModelOutput(
            **{
                f.name: (None if getattr(self, f.name) is None else getattr(self, f.name).to(device))
                for f in fields(self)
            }
        )

    def detach(self) -> ModelOutput:
        return ModelOutput(
            **{
                f.name: (None if getattr(self, f.name) is None else getattr(self, f.name).detach())
                for f in fields(self)
            }
        )


def as_bool_mask(mask: Tensor) -> Tensor:
    """[B, T] bool, True = valid step."""
    return mask if mask.dtype == torch.bool else mask > 0
