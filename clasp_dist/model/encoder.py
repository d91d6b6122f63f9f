"""UnAV-style audio-visual encoder at full temporal resolution (docs/model.md).

Per modality: two masked conv1d(k=3)+LN+ReLU embedding layers to width d, sinusoidal position
encoding, `n_self_layers` pre-LN self-attention blocks, then one cross-modal block per direction
whose query comes from the other modality and whose keys, values and residual come from its own
stream. Padded steps are zeroed after every layer and masked out of every attention, so a video's
valid-step outputs do not depend on how far it was padded.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def masked_fill_steps(x: Tensor, mask: Tensor) -> Tensor:
    """Zero the padded steps of x [B, T, D] (mask [B, T] bool, True = valid)."""
    return x * mask.unsqueeze(-1).to(x.dtype)


class MaskedConv1d(nn.Module):
    """conv1d over time on [B, T, D] with zeroed padded steps on input and output."""

    def __init__(self, d_in: int, d_out: int, kernel_size: int = 3):
        super().__init__()
        assert kernel_size % 2 == 1
        self.conv = nn.Conv1d(d_in, d_out, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = masked_fill_steps(x, mask)  # [B, T, Din]
        y = self.conv(x.transpose(1, 2)).transpose(1, 2)  # [B, T, Dout]
        return masked_fill_steps(y, mask)


class ConvLNReLU(nn.Module):
    """Masked conv1d(k) -> LayerNorm -> ReLU, padded steps zeroed."""

    def __init__(self, d_in: int, d_out: int, kernel_size: int = 3):
        super().__init__()
        self.conv = MaskedConv1d(d_in, d_out, kernel_size)
        self.norm = nn.LayerNorm(d_out)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        y = F.relu(self.norm(self.conv(x, mask)))  # [B, T, Dout]
        return masked_fill_steps(y, mask)


def sinusoidal_table(max_len: int, d: int) -> Tensor:
    """[max_len, d] sine/cosine position table (Vaswani et al.)."""
    pos = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)  # [L, 1]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))  # [d/2]
    table = torch.zeros(max_len, d)
    table[:, 0::2] = torch.sin(pos * div)
    table[:, 1::2] = torch.cos(pos * div[: d // 2])
    return table


def safe_key_mask(key_mask: Tensor) -> Tensor:
    """Key mask [B, Tk] (True = attend) with at least one key per row (the first), so no softmax row is empty."""
    empty = ~key_mask.any(dim=-1, keepdim=True)  # [B, 1]
    first = torch.zeros_like(key_mask)
    first[:, 0] = True
    return key_mask | (empty & first)


class MultiHeadAttention(nn.Module):
    """Multi-head attention over [B, T, d] with a boolean attend-mask (True = may attend).

    `attn_mask` is [B, Tk] (key padding) or [B, Tq, Tk] (per query); every query row must keep at
    least one key. Uses scaled_dot_product_attention (softmax in a numerically safe kernel).
    """

    def __init__(self, d: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)
        self.dropout = dropout

    def forward(self, q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor) -> Tensor:
        B, Tq, d = q.shape
        Tk = k.shape[1]
        h = self.n_heads
        qh = self.q_proj(q).view(B, Tq, h, d // h).transpose(1, 2)  # [B, h, Tq, dh]
        kh = self.k_proj(k).view(B, Tk, h, d // h).transpose(1, 2)  # [B, h, Tk, dh]
        vh = self.v_proj(v).view(B, Tk, h, d // h).transpose(1, 2)  # [B, h, Tk, dh]
        if attn_mask.dim() == 2:
            m = attn_mask[:, None, None, :]  # [B, 1, 1, Tk]
        else:
            m = attn_mask[:, None, :, :]  # [B, 1, Tq, Tk]
        out = F.scaled_dot_product_attention(
            qh, kh, vh, attn_mask=m, dropout_p=self.dropout if self.training else 0.0
        )  # [B, h, Tq, dh]
        return self.out_proj(out.transpose(1, 2).reshape(B, Tq, d))  # [B, Tq, d]


class FeedForward(nn.Module):
    """Linear -> GELU -> dropout -> Linear."""

    def __init__(self, d: int, mult: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(d, d * mult)
        self.fc2 = nn.Linear(d * mult, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.drop(F.gelu(self.fc1(x))))


class AttentionBlock(nn.Module):
    """Pre-LN block: x = x + Attn(LN(q_src), LN(kv), LN(kv)); x = x + FFN(LN(x)).

    Self-attention when q_src and kv are x; a cross-modal block passes the other modality as q_src
    (the residual and keys/values stay on x's own stream).
    """

    def __init__(self, d: int, n_heads: int, ffn_mult: int, dropout: float, cross: bool = False):
        super().__init__()
        self.norm_q = nn.LayerNorm(d)
        self.norm_kv = nn.LayerNorm(d) if cross else None
        self.attn = MultiHeadAttention(d, n_heads, dropout)
        self.norm_ffn = nn.LayerNorm(d)
        self.ffn = FeedForward(d, ffn_mult, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        mask: Tensor,
        query: Tensor | None = None,
        kv: Tensor | None = None,
        attn_mask: Tensor | None = None,
    ) -> Tensor:
        """x [B, T, d] residual stream; query [B, T, d] (default x); kv [B, Tk, d] (default x)."""
        q = self.norm_q(x if query is None else query)  # [B, T, d]
        if kv is None:
            kv_n = q if query is None else (self.norm_kv or self.norm_q)(x)  # [B, T, d]
        else:
            kv_n = (self.norm_kv or self.norm_q)(kv)  # [B, Tk, d]
        key_mask = mask if attn_mask is None else attn_mask
        x = x + self.drop(self.attn(q, kv_n, kv_n, safe_key_mask(key_mask) if key_mask.dim() == 2 else key_mask))
        x = x + self.drop(self.ffn(self.norm_ffn(x)))  # [B, T, d]
        return masked_fill_steps(x, mask)


class ModalityEmbedding(nn.Module):
    """Two masked conv1d(k=3)+LN+ReLU layers to width d, plus sinusoidal positions."""

    def __init__(self, d_in: int, d: int):
        super().__init__()
        self.layers = nn.ModuleList([ConvLNReLU(d_in, d), ConvLNReLU(d, d)])

    def forward(self, x: Tensor, mask: Tensor, pos: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x, mask)  # [B, T, d]
        return masked_fill_steps(x + pos.to(x.dtype), mask)


class AVEncoder(nn.Module):
    """Audio and visual streams -> contextualised [B, T, d] each (docs/model.md)."""

    def __init__(
        self,
        visual_dim: int,
        audio_dim: int,
        d: int,
        n_heads: int,
        n_self_layers: int,
        ffn_mult: int,
        dropout: float,
        max_len: int,
    ):
        super().__init__()
        self.max_len = max_len
        self.embed_v = ModalityEmbedding(visual_dim, d)
        self.embed_a = ModalityEmbedding(audio_dim, d)
        self.register_buffer("pos_table", sinusoidal_table(max_len, d), persistent=False)
        self.self_v = nn.ModuleList([AttentionBlock(d, n_heads, ffn_mult, dropout) for _ in range(n_self_layers)])
        self.self_a = nn.ModuleList([AttentionBlock(d, n_heads, ffn_mult, dropout) for _ in range(n_self_layers)])
        self.cross_v = AttentionBlock(d, n_heads, ffn_mult, dropout, cross=True)  # query audio, kv/residual visual
        self.cross_a = AttentionBlock(d, n_heads, ffn_mult, dropout, cross=True)  # query visual, kv/residual audio

    def forward(self, visual: Tensor, audio: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        a, v = self.unimodal(visual, audio, mask)  # [B, T, d] each
        return self.cross_modal(a, v, mask)

    def unimodal(self, visual: Tensor, audio: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(a, v) [B, T, d] each before the cross-modal block: each depends on its own modality only."""
        T = visual.shape[1]
        if T > self.max_len:
            raise ValueError(f"sequence of {T} steps exceeds model.max_len={self.max_len}")
        pos = self.pos_table[:T].unsqueeze(0)  # [1, T, d]
        v = self.embed_v(visual, mask, pos)  # [B, T, d]
        a = self.embed_a(audio, mask, pos)  # [B, T, d]
        for blk_v, blk_a in zip(self.self_v, self.self_a):
            v = blk_v(v, mask)  # [B, T, d]
            a = blk_a(a, mask)  # [B, T, d]
        return a, v

    def cross_modal(self, a: Tensor, v: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """The cross-modal block on unimodal (a, v): each stream queried by the other -> (a', v') [B, T, d]."""
        v_out = self.cross_v(v, mask, query=a)  # [B, T, d]
        a_out = self.cross_a(a, mask, query=v)  # [B, T, d]
        return a_out, v_out
