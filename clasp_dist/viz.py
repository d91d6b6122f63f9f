"""Pictures for people: per-video timelines and the ablation chart (matplotlib, Agg, files only).

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas directly, so nothing here
touches pyplot's global state or needs a display.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

GT_COLOR = "#2b6cb0"
PRED_COLOR = "#dd6b20"
AGREEMENT_COLOR = "#2f855a"
ANCHOR_COLOR = "#c53030"

PathLike = str | os.PathLike


SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def confined_path(out_dir: PathLike, name: str, suffix: str = "") -> Path:
    """``out_dir / <name><suffix>`` for a name that comes from data (a video id), never outside out_dir.

    Characters other than letters, digits, ``_ . -`` become ``_`` and leading dots are dropped, so
    ``../../x`` and ``/abs`` stay inside; a changed name gets an 8-hex digest of the original, so two
    ids never share a file.
    """
    safe = SAFE_NAME.sub("_", str(name)).lstrip(".") or "_"
    if safe != name:
        safe = f"{safe[:100]}-{hashlib.sha256(str(name).encode()).hexdigest()[:8]}"
    base = Path(out_dir).resolve()
    path = (base / f"{safe}{suffix}").resolve()
    if path.parent != base:  # unreachable after sanitising; kept as the guarantee
        raise ValueError(f"output name {name!r} would leave {base}")
    return path


def _save(fig: Figure, path: PathLike, dpi: int = 120) -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi)
    return path


def _anchor_steps(anchors, num_steps: int | None) -> np.ndarray:
    """Anchors as step indices: from a bool mask [T] or an index list."""
    arr = np.asarray(anchors)
    if arr.dtype == bool:
        return np.flatnonzero(arr)
    arr = arr.astype(np.int64).reshape(-1)
    return arr[(arr >= 0) & (arr < num_steps)] if num_steps is not None else arr


def plot_timeline(
    path: PathLike,
    video_id: str,
    duration: float,
    gt_segments: Sequence[Sequence[float]],
    pred_segments: Sequence[Sequence[float]],
    class_names: Sequence[str],
    agreement: Sequence[float] | None = None,
    anchors: Sequence | None = None,
    step_s: float = 0.32,
    offset_s: float = 0.48,
) -> str:
    """One video's timeline: a lane per class present (ground truth on top, predictions below with
    opacity = score / max score), and underneath the audio-visual agreement curve with anchors.

    gt_segments: ``(t_start, t_end, class_id)``; pred_segments: ``(t_start, t_end, class_id, score)``;
    agreement: per-step values [T] (step t at ``offset_s + t * step_s`` seconds); anchors: a bool mask
    [T] or step indices. Returns the written path.
    """
    classes = sorted({int(s[2]) for s in gt_segments} | {int(s[2]) for s in pred_segments})
    lane = {c: i for i, c in enumerate(classes)}
    max_score = max([float(s[3]) for s in pred_segments] + [1e-12])
    has_curve = agreement is not None and len(agreement) > 0

    height = 1.0 + 0.55 * max(1, len(classes)) + (1.4 if has_curve else 0.0)
    fig = Figure(figsize=(10, height))
    grid = fig.add_gridspec(2 if has_curve else 1, 1, height_ratios=[max(1, len(classes)), 2.5] if has_curve else [1])
    ax = fig.add_subplot(grid[0])
    for s, e, c in ((float(a), float(b), int(k)) for a, b, k, *_ in gt_segments):
        ax.broken_barh([(s, e - s)], (lane[c] + 0.52, 0.38), facecolors=GT_COLOR)
    for s, e, c, p in ((float(a), float(b), int(k), float(q)) for a, b, k, q, *_ in pred_segments):
        alpha = float(np.clip(p / max_score, 0.08, 1.0))
        ax.broken_barh(
            [(s, e - s)], (lane[c] + 0.1, 0.38), facecolors=PRED_COLOR, alpha=alpha, edgecolor=PRED_COLOR, linewidth=0.8
        )
    ax.set_yticks([i + 0.5 for i in range(len(classes))])
    ax.set_yticklabels([class_names[c] if 0 <= c < len(class_names) else str(c) for c in classes], fontsize=8)
    ax.set_ylim(0, max(1, len(classes)))
    ax.set_xlim(0, duration)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"{video_id}  (blue: ground truth, orange: predictions, opacity = score)", fontsize=9)
    if not classes:
        ax.text(duration / 2, 0.5, "no segments", ha="center", va="center", fontsize=9)
    if has_curve:
        values = np.asarray(agreement, dtype=np.float64)  # [T]
        times = offset_s + step_s * np.arange(len(values))  # [T]
        curve = fig.add_subplot(grid[1], sharex=ax)
        curve.plot(times, values, color=AGREEMENT_COLOR, lw=1.2, label="agreement")
        if anchors is not None:
            steps = _anchor_steps(anchors, len(values))
            curve.scatter(times[steps], values[steps], color=ANCHOR_COLOR, s=14, zorder=3, label="anchors")
        curve.set_ylabel("agreement", fontsize=8)
        curve.set_xlabel("time (s)")
        curve.legend(fontsize=7, loc="upper right")
        curve.grid(alpha=0.3)
    else:
        ax.set_xlabel("time (s)")
    fig.tight_layout()
    return _save(fig, path)


def plot_ablation_bars(
    path: PathLike,
    arms: Sequence[str],
    means: Sequence[float],
    stds: Sequence[float],
    ylabel: str = "average mAP (%)",
    title: str | None = None,
) -> str:
    """Bar chart of ablation arms (mean with a +-std error bar, value printed on each bar)."""
    if not (len(arms) == len(means) == len(stds)):
        raise ValueError(f"arms, means and stds differ in length ({len(arms)}, {len(means)}, {len(stds)})")
    means_arr, stds_arr = np.asarray(means, dtype=np.float64), np.asarray(stds, dtype=np.float64)
    fig = Figure(figsize=(max(4.0, 1.1 * len(arms) + 1.5), 4.0))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(arms))
    bars = ax.bar(x, means_arr, yerr=stds_arr, capsize=4, color=GT_COLOR, alpha=0.85)
    for bar, m, sd in zip(bars, means_arr, np.nan_to_num(stds_arr)):
        ax.annotate(
            f"{m:.2f}",
            (bar.get_x() + bar.get_width() / 2, m + sd),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(x)
    ax.set_xticklabels(list(arms), rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    top = float(np.nanmax(means_arr + np.nan_to_num(stds_arr))) if len(arms) else 1.0
    ax.set_ylim(0, top * 1.15 if top > 0 else 1.0)
    fig.tight_layout()
    return _save(fig, path)


SIGNAL_STYLES = {"base": dict(ls="--", lw=1.0), "refined": dict(ls="-", lw=1.5)}
CATEGORY_COLORS = {"event": GT_COLOR, "distractor": PRED_COLOR, "background": "#718096"}


def plot_signal_timeline(
    path: PathLike,
    video_id: str,
    times: np.ndarray,
    events: dict[int, np.ndarray],
    distractors: dict[int, np.ndarray],
    signals: dict[str, np.ndarray],
    alpha: np.ndarray | None = None,
    anchors: np.ndarray | None = None,
    class_names: Sequence[str] = (),
) -> str:
    """A model diagnostic over one video: per ground-truth class, its event steps (shaded), its
    one-stream distractor steps (hatched) and the localisation signal sqrt(P_a P_v) of each head;
    underneath, the anchor score alpha_t with the chosen anchors.

    events / distractors: class -> [T] bool; signals: head name ('base', 'refined') -> [T, C]."""
    classes = sorted(events)
    has_alpha = alpha is not None
    rows = max(1, len(classes)) + (1 if has_alpha else 0)
    fig = Figure(figsize=(10, 1.6 * rows + 0.6))
    axes = [fig.add_subplot(rows, 1, 1)]
    axes += [fig.add_subplot(rows, 1, k + 1, sharex=axes[0]) for k in range(1, rows)]
    step = float(times[1] - times[0]) if len(times) > 1 else 1.0
    palette = [GT_COLOR, AGREEMENT_COLOR, "#6b46c1", "#b7791f", "#2c7a7b"]
    for ax, c in zip(axes, classes):
        _shade(ax, times, events[c], step, dict(color=GT_COLOR, alpha=0.18, lw=0), "event")
        if c in distractors and distractors[c].any():
            _shade(
                ax,
                times,
                distractors[c],
                step,
                dict(facecolor="none", edgecolor=PRED_COLOR, hatch="//", lw=0),
                "one-stream distractor",
            )
        for k, (head, values) in enumerate(signals.items()):
            ax.plot(
                times,
                values[:, c],
                color=palette[k % len(palette)],
                label=f"{head} sqrt(Pa Pv)",
                **SIGNAL_STYLES.get(head, {}),
            )
        ax.set_ylim(0, 1.02)
        name = class_names[c] if 0 <= c < len(class_names) else str(c)
        ax.set_ylabel(name[:18], fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    if has_alpha:
        ax = axes[-1]
        ax.plot(times, alpha, color=AGREEMENT_COLOR, lw=1.2, label="alpha (agreement x confidence)")
        if anchors is not None:
            ax.scatter(times[anchors], np.asarray(alpha)[anchors], color=ANCHOR_COLOR, s=14, zorder=3, label="anchors")
        for c in classes:
            _shade(ax, times, events[c], step, dict(color=GT_COLOR, alpha=0.12, lw=0), None)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("anchor score", fontsize=8)
        ax.legend(fontsize=7, loc="upper right")
        ax.grid(alpha=0.3)
    axes[0].set_title(f"{video_id}: localisation signal per ground-truth class", fontsize=9)
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    return _save(fig, path)


def _shade(ax, times: np.ndarray, steps: np.ndarray, step: float, style: dict, label: str | None) -> None:
    """Shade runs of True steps as spans (each step covers +-step/2 around its centre)."""
    idx = np.flatnonzero(steps)
    if idx.size == 0:
        return
    breaks = np.flatnonzero(np.diff(idx) > 1)
    starts, ends = np.r_[idx[0], idx[breaks + 1]], np.r_[idx[breaks], idx[-1]]
    for k, (s, e) in enumerate(zip(starts, ends)):
        ax.axvspan(times[s] - step / 2, times[e] + step / 2, label=label if k == 0 else None, **style)


def plot_category_histograms(
    path: PathLike, values: dict[str, np.ndarray], xlabel: str, title: str | None = None, bins: int = 40
) -> str:
    """Overlaid density histograms of one per-step quantity split by step category (event, distractor, ...)."""
    fig = Figure(figsize=(6.5, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    for name, v in values.items():
        v = np.asarray(v, dtype=np.float64)
        if v.size == 0:
            continue
        ax.hist(
            np.clip(v, 0.0, 1.0),
            bins=edges,
            density=True,
            histtype="step",
            lw=1.6,
            color=CATEGORY_COLORS.get(name),
            label=f"{name} steps (n={v.size}, mean {v.mean():.2f})",
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
