"""CLASP: encoder -> base weak classifier -> MEAE -> CSAI -> anchor fusion -> ATP -> refined heads.

MEAE reads the base heads (after the encoder's cross-modal block), or, with model.meae_evidence /
model.meae_confidence = unimodal, extra per-stream heads on the encoder's features before that block,
trained by their own MIL loss (losses.py), so that each stream's evidence comes from its own modality.

Every module is switched by ModelConfig: the base model (use_meae=False, use_atp=False) builds
only the encoder and the base classifier; MEAE/CSAI have no parameters; anchor fusion, ATP and the
refined heads exist only when use_atp is on.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config.schema import ModelConfig
from .atp import AnchorFusion, AnchorPropagation
from .classifier import WeakClassifier
from .csai import select_anchors
from .encoder import AVEncoder
from .meae import class_set, mutual_event_agreement
from .output import ModelOutput, as_bool_mask


class CLASP(nn.Module):
    """CLASP(cfg, visual_dim, audio_dim, num_classes); forward(visual, audio, mask, labels=None) -> ModelOutput."""

    def __init__(self, cfg: ModelConfig, visual_dim: int, audio_dim: int, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        d = cfg.d_model
        self.encoder = AVEncoder(
            visual_dim, audio_dim, d, cfg.n_heads, cfg.n_self_layers, cfg.ffn_mult, cfg.dropout, cfg.max_len
        )
        self.base = WeakClassifier(d, num_classes, cfg.mil_pooling, cfg.mil_ratio, cfg.cls_prior)
        self.use_csai = cfg.use_meae and (cfg.csai_global or cfg.csai_local)
        if cfg.use_atp:
            self.fusion = AnchorFusion(d, cfg.anchor_fusion)
            self.atp = AnchorPropagation(d, cfg.n_heads, cfg.ffn_mult, cfg.dropout, cfg.propagation, cfg.prop_threshold)
            self.refined = WeakClassifier(d, num_classes, cfg.mil_pooling, cfg.mil_ratio, cfg.cls_prior)
        if cfg.unimodal_heads:  # built last: the other modules' initial weights do not depend on it
            self.unimodal = WeakClassifier(d, num_classes, cfg.mil_pooling, cfg.mil_ratio, cfg.cls_prior)

    @staticmethod
    def _meae_heads(out: ModelOutput, evidence: str) -> tuple[Tensor, Tensor]:
        """(audio, visual) CAS logits [B, T, C] that MEAE reads: the base heads ('fused') or the unimodal ones."""
        if evidence == "unimodal":
            return out.cas_a_uni, out.cas_v_uni
        return out.cas_a, out.cas_v

    @property
    def compute_dtype(self) -> torch.dtype:
        """The parameters' dtype (fp32, or bf16 under DeepSpeed bf16): the dtype inputs are cast to."""
        return next(self.parameters()).dtype

    def forward(self, visual: Tensor, audio: Tensor, mask: Tensor, labels: Tensor | None = None) -> ModelOutput:
        """visual [B, T, Dv], audio [B, T, Da], mask [B, T] (True = valid), labels [B, C] multi-hot or None.

        Labels only choose MEAE's class set while training; at inference pass None (predicted classes).
        Inputs are cast to the parameters' dtype, so a module cast to bf16 (DeepSpeed bf16) takes f32 batches.
        """
        cfg = self.cfg
        mask = as_bool_mask(mask)  # [B, T]
        # From a parameter, never a buffer: DeepSpeed bf16 casts parameters and leaves buffers in fp32.
        dtype = self.compute_dtype
        visual, audio = visual.to(dtype), audio.to(dtype)
        a_uni, v_uni = self.encoder.unimodal(visual, audio, mask)  # [B, T, d] each, one modality each
        a, v = self.encoder.cross_modal(a_uni, v_uni, mask)  # [B, T, d] each
        cas_a, cas_v, video_a, video_v = self.base(a, v, mask)  # [B, T, C] x2, [B, C] x2
        out = ModelOutput(cas_a=cas_a, cas_v=cas_v, video_a=video_a, video_v=video_v)
        if not cfg.use_meae:
            return out
        if cfg.unimodal_heads:
            out.cas_a_uni, out.cas_v_uni, out.video_a_uni, out.video_v_uni = self.unimodal(a_uni, v_uni, mask)
        K = class_set(labels, video_a, video_v, cfg.inference_class_threshold)  # [B, C]
        out.agreement, out.anchor_score = mutual_event_agreement(
            *self._meae_heads(out, cfg.meae_evidence),
            mask,
            K,
            cfg.discrepancy,
            cfg.anchor_score,
            conf_cas=None if cfg.meae_confidence == cfg.meae_evidence else self._meae_heads(out, cfg.meae_confidence),
        )  # [B, T] x2
        if not self.use_csai:
            return out
        anchors = select_anchors(
            out.anchor_score,
            mask,
            cfg.csai_global,
            cfg.global_ratio,
            cfg.csai_local,
            cfg.window,
            cfg.local_tau,
            cfg.local_tau_mode,
        )  # [B, T] bool
        out.anchor_mask = anchors
        if not cfg.use_atp:
            return out
        bank = self.fusion(a, v)  # [B, T, d]
        a2, v2 = self.atp(a, v, bank, anchors, mask)  # [B, T, d] x2
        out.cas_a_ref, out.cas_v_ref, out.video_a_ref, out.video_v_ref = self.refined(a2, v2, mask)
        return out
