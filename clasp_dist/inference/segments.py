"""Weak predictions -> timed segments (docs/model.md), numpy only.

Per video: class scores p_c = sqrt(p_a' p_v') from the final video logits (decode.video_score=base: from the
base heads'); keep classes with p_c >= class_threshold (at most max_classes, at least the top one). For each
kept class the localisation signal sqrt(P_a' P_v') over the valid steps is thresholded at every level of
loc_thresholds (decode.loc_threshold_mode=relative: fractions of that signal's own [min, max] range); runs of
consecutive steps are proposals scored by outer-inner contrast (inner mean - mean of the outer margins,
floor(oic_margin * length) steps, at least 1, on each side, clipped to the valid range, + oic_class_weight * p_c).
Proposals of all thresholds are merged, converted to seconds on the feature grid
([offset + (s - 0.5) step, offset + (e + 0.5) step], clipped to [0, duration]), exact duplicates (several
levels giving the same run) collapsed to one, passed through per-class Gaussian soft-NMS
(score *= exp(-iou^2 / sigma)), and the top max_segments per video are kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config.schema import DecodeConfig


def _np(x) -> np.ndarray:
    """Tensor / array / list -> numpy (float tensors as float32)."""
    if hasattr(x, "detach"):
        x = x.detach()
        if x.is_floating_point():
            x = x.float()
        return x.cpu().numpy()
    return np.asarray(x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free


def select_classes(p: np.ndarray, threshold: float, max_classes: int) -> np.ndarray:
    """Class ids by descending p [C]: p >= threshold, at most max_classes, at least the top one."""
    order = np.argsort(-p, kind="stable")
    n = int(np.clip((p >= threshold).sum(), 1, max_classes))
    return order[:n]


def find_runs(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive (starts, ends) of the runs of True in a 1-D bool array."""
    d = np.diff(np.concatenate([[0], binary.astype(np.int8), [0]]))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1


def margin_steps(length: np.ndarray, margin: float) -> np.ndarray:
    """Outer margin of runs of `length` steps: floor(margin * length), at least 1 when margin > 0; same both sides."""
    m = np.floor(margin * np.asarray(length, dtype=np.float64)).astype(np.int64)
    return np.maximum(m, 1) if margin > 0 else m


def oic_scores(signal: np.ndarray, starts: np.ndarray, ends: np.ndarray, margin: float) -> np.ndarray:
    """Outer-inner contrast of runs [s, e] on signal [T]: inner mean - mean of both outer margins.

    Both margins span margin_steps(length) steps (symmetric, so a run and its mirror image score the same),
    clipped to [0, T-1]; with no outer step the outer mean is 0.
    """
    T = signal.shape[0]
    cs = np.concatenate([[0.0], np.cumsum(signal, dtype=np.float64)])
    length = ends - starts + 1
    inner = (cs[ends + 1] - cs[starts]) / length
    m = margin_steps(length, margin)  # [N]
    o_s = np.maximum(0, starts - m)
    o_e = np.minimum(T - 1, ends + m)
    outer_sum = (cs[starts] - cs[o_s]) + (cs[o_e + 1] - cs[ends + 1])
    outer_n = (starts - o_s) + (o_e - ends)
    outer = np.where(outer_n > 0, outer_sum / np.maximum(outer_n, 1), 0.0)
    return inner - outer


def steps_to_seconds(starts, ends, step_s: float, offset_s: float, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive step runs s..e -> [offset + (s - 0.5) step, offset + (e + 0.5) step] clipped to [0, duration]."""
    s = offset_s + (np.asarray(starts, dtype=np.float64) - 0.5) * step_s
    e = offset_s + (np.asarray(ends, dtype=np.float64) + 0.5) * step_s
    return np.clip(s, 0.0, duration), np.clip(e, 0.0, duration)


def temporal_iou(t1: float, t2: float, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """tIoU of [t1, t2] against segments [starts, ends]."""
    inter = np.clip(np.minimum(t2, ends) - np.maximum(t1, starts), 0.0, None)
    union = (t2 - t1) + (ends - starts) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def soft_nms(
    starts: np.ndarray, ends: np.ndarray, scores: np.ndarray, sigma: float, max_keep: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian soft-NMS of 1-D segments of one class -> (kept indices in pick order, decayed scores).

    Repeatedly pick the highest remaining score, then decay every remaining score by exp(-iou^2 / sigma).
    """
    scores = np.asarray(scores, dtype=np.float64).copy()
    remaining = np.arange(len(scores))
    keep, kept_scores = [], []
    limit = len(scores) if max_keep is None else min(max_keep, len(scores))
    while remaining.size and len(keep) < limit:
        i = int(np.argmax(scores[remaining]))
        j = remaining[i]
        keep.append(j)
        kept_scores.append(scores[j])
        remaining = np.delete(remaining, i)
        if remaining.size:
            iou = temporal_iou(starts[j], ends[j], starts[remaining], ends[remaining])
            scores[remaining] *= np.exp(-(iou**2) / sigma)
    return np.asarray(keep, dtype=np.int64), np.asarray(kept_scores, dtype=np.float64)


def unique_segments(t1: np.ndarray, t2: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact duplicates (same start and end) collapsed to their best score, before soft-NMS spends the budget on them."""
    if t1.size < 2:
        return t1, t2, scores
    order = np.lexsort((-scores, t2, t1))  # by (t1, t2), best score first within a group
    t1, t2, scores = t1[order], t2[order], scores[order]
    first = np.concatenate([[True], (t1[1:] != t1[:-1]) | (t2[1:] != t2[:-1])])
    return t1[first], t2[first], scores[first]


def level_thresholds(signal: np.ndarray, cfg: DecodeConfig) -> np.ndarray:
    """The levels a class signal [T] is cut at: loc_thresholds, or (relative) fractions of its own [min, max] range."""
    th = np.asarray(cfg.loc_thresholds, dtype=np.float64)
    if cfg.loc_threshold_mode == "absolute":
        return th
    lo, hi = float(signal.min()), float(signal.max())
    return lo + th * (hi - lo)


def class_proposals(signal: np.ndarray, p_c: float, cfg: DecodeConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of signal [T] at every level, scored by outer-inner contrast + oic_class_weight * p_c: (starts, ends, scores)."""
    s_all, e_all = [], []
    for th in level_thresholds(signal, cfg):
        s, e = find_runs(signal >= th)
        s_all.append(s)
        e_all.append(e)
    s, e = np.concatenate(s_all), np.concatenate(e_all)
    return s, e, oic_scores(signal, s, e, cfg.oic_margin) + cfg.oic_class_weight * p_c


def decode_video(
    prob_a: np.ndarray,
    prob_v: np.ndarray,
    video_prob: np.ndarray,
    video_id: str,
    step_s: float,
    offset_s: float,
    duration: float,
    cfg: DecodeConfig,
    step_index: np.ndarray | None = None,
) -> list[dict]:
    """One video's segments from per-step probabilities prob_a, prob_v [T_valid, C] and p_c [C].

    step_index [T_valid] maps compacted valid steps to grid steps (default: 0..T_valid-1).
    """
    T = prob_a.shape[0]
    if T == 0:
        return []
    if step_index is None:
        step_index = np.arange(T)
    records: list[dict] = []
    for c in select_classes(video_prob, cfg.class_threshold, cfg.max_classes):
        signal = np.sqrt(prob_a[:, c] * prob_v[:, c])  # [T]
        s, e, sc = class_proposals(signal, float(video_prob[c]), cfg)
        if not s.size:
            continue
        t1, t2 = steps_to_seconds(step_index[s], step_index[e], step_s, offset_s, duration)
        ok = t2 > t1
        t1, t2, sc = unique_segments(t1[ok], t2[ok], sc[ok])
        keep, kept = soft_nms(t1, t2, sc, cfg.nms_sigma, cfg.max_segments)
        records.extend(
            dict(video_id=video_id, label=int(c), t_start=float(t1[k]), t_end=float(t2[k]), score=float(x))
            for k, x in zip(keep, kept)
        )
    records.sort(key=lambda r: -r["score"])
    return records[: cfg.max_segments]


def decode_outputs(out, mask, video_ids: Sequence[str], step_s, offset_s, durations, cfg: DecodeConfig) -> list[dict]:
    """ModelOutput of a batch -> list of dict(video_id, label, t_start, t_end, score) (docs/model.md).

    step_s, offset_s, durations: per-video sequences/arrays/tensors [B] or scalars.
    """
    cas_a, cas_v, video_a, video_v = (_np(x) for x in out.final())  # [B, T, C] x2, [B, C] x2
    if cfg.video_score == "base":
        video_a, video_v = _np(out.video_a), _np(out.video_v)  # [B, C] x2: the base heads' class scores
    mask = _np(mask).astype(bool)  # [B, T]
    B = cas_a.shape[0]
    step_s, offset_s, durations = (
        np.broadcast_to(_np(x).astype(np.float64), (B,)) for x in (step_s, offset_s, durations)
    )
    prob_a, prob_v = _sigmoid(cas_a.astype(np.float64)), _sigmoid(cas_v.astype(np.float64))
    p_video = np.sqrt(_sigmoid(video_a.astype(np.float64)) * _sigmoid(video_v.astype(np.float64)))  # [B, C]
    records: list[dict] = []
    for b in range(B):
        idx = np.flatnonzero(mask[b])
        records.extend(
            decode_video(
                prob_a[b, idx],
                prob_v[b, idx],
                p_video[b],
                str(video_ids[b]),
                float(step_s[b]),
                float(offset_s[b]),
                float(durations[b]),
                cfg,
                step_index=idx,
            )
        )
    return records
