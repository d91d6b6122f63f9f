"""Padding rows of variable length into a :class:`Batch` (docs/CONTRACTS.md), with and without Ray.

* :func:`collate_rows` (list of row dicts, the Ray-free path) and :func:`batch_from_columns` (a
  dict of columns, e.g. a Ray ``map_batches`` numpy batch) build a ``Batch``.
* ``PaddingCollate`` is a ``ray.data.collate_fn.NumpyBatchCollateFn`` for ``iter_torch_batches``;
  it is defined on first access so that importing this module does not import Ray.
* :func:`iter_train_batches` streams a Ray dataset (or a shard of one) as padded batches, shuffled
  locally when asked (the evaluator does not iterate: it maps ``batch_from_columns`` over the split).

Rows whose ``error`` column is set (skipped bad samples, ``bad_sample_policy=skip``) are dropped
here and counted in a :class:`~clasp_dist.data.sample_rows.SkipStats`; the iterators log its summary
at the end of a pass and raise ``TooManySkippedError`` past ``max_skipped_fraction``.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch

from .errors import BadSampleError
from .sample_rows import SkipStats

log = logging.getLogger(__name__)


@dataclass
class Batch:
    visual: torch.Tensor  # [B, T, Dv] floating, the stored dtype (fp16 or fp32; the model casts on its device)
    audio: torch.Tensor  # [B, T, Da] floating, the stored dtype, zero-padded
    mask: torch.Tensor  # [B, T] bool, True = valid step
    labels: torch.Tensor  # [B, C] float32 multi-hot video labels
    video_id: list[str]
    duration: torch.Tensor  # [B] float64 seconds
    step_s: torch.Tensor  # [B] float64
    offset_s: torch.Tensor  # [B] float64
    num_steps: torch.Tensor  # [B] int64
    segments: list[list[tuple[float, float, int]]] | None = None
    """Ground-truth (start_s, end_s, class) per video; evaluation reads only, else None."""

    def __len__(self) -> int:
        return len(self.video_id)

    def to(self, device, only: Sequence[str] | None = None) -> Batch:
        """The batch on `device` (only the tensors named in `only`, when given: the rest stay on the host).
        To a GPU: from page-locked memory, asynchronously (the copy overlaps the previous step's kernels;
        CUDA orders it before any kernel that reads it on the same stream)."""
        device = torch.device(device)
        to_gpu = device.type == "cuda"
        moved = {
            name: (t.pin_memory() if to_gpu and not t.is_pinned() else t).to(device, non_blocking=to_gpu)
            for name, t in self._tensors().items()
            if only is None or name in only
        }
        return replace(self, **moved)

    def pin_memory(self) -> Batch:
        """The batch in page-locked host memory (done in the loader's threads, so `to(cuda)` is only a DMA)."""
        return replace(self, **{name: t.pin_memory() for name, t in self._tensors().items()})

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), torch.Tensor)}


MODEL_INPUTS = ("visual", "audio", "mask", "labels")
"""The Batch tensors a training step reads; the float64 timing metadata stays on the host."""


def _pad(arrays: Sequence[np.ndarray], length: int) -> np.ndarray:
    """Stack ``[T_i, D]`` arrays into a fresh ``[B, length, D]`` in their stored floating dtype (fp16 stays
    fp16: half the host copy, the model casts on its device; copies: Ray's arrays are read-only)."""
    dtype = np.result_type(*arrays)
    dtype = dtype if dtype.kind == "f" else np.float32
    out = np.zeros((len(arrays), length, arrays[0].shape[1]), dtype=dtype)  # [B, T, D]
    for i, a in enumerate(arrays):
        out[i, : a.shape[0]] = a
    return out


def _multi_hot(labels: Sequence[np.ndarray], num_classes: int, video_ids: Sequence[str]) -> np.ndarray:
    out = np.zeros((len(labels), num_classes), dtype=np.float32)  # [B, C]
    for i, ids in enumerate(labels):
        ids = np.asarray(ids)  # [n]
        if ids.size and (ids.dtype.kind not in "iu" or ids.min() < 0 or ids.max() >= num_classes):
            raise BadSampleError(
                f"labels {ids.tolist()[:10]} are not class ids in [0, {num_classes})",
                video_id=str(video_ids[i]),
                field="labels",
            )
        out[i, ids.astype(np.int64)] = 1.0
    return out


def _parse_segments(texts: Iterable[Any], video_ids: Sequence[str]) -> list[list[tuple[float, float, int]]]:
    """``[(start_s, end_s, class)]`` per row; a malformed row is a BadSampleError naming the video (the
    decoder already refuses them: this guards rows built by other code)."""
    out = []
    for text, vid in zip(texts, video_ids):
        try:
            out.append(
                [
                    (float(s), float(e), int(c))
                    for s, e, c in (json.loads(text) if isinstance(text, (str, bytes)) else text)
                ]
            )
        except (ValueError, TypeError, RecursionError) as exc:
            raise BadSampleError(
                f"malformed segments ({type(exc).__name__}: {str(exc)[:120]})", video_id=str(vid), field="segments"
            ) from None
    return out


def batch_from_columns(columns: Mapping[str, Any], num_classes: int, stats: SkipStats | None = None) -> Batch | None:
    """Pad a batch given as columns (row-aligned sequences); None when every row was a skipped sample."""
    n = len(columns["video_id"])
    errors = columns.get("error", [""] * n)
    truncated = columns.get("truncated_steps", [0] * n)
    extra = columns.get("extra_members", [0] * n)
    keep = [i for i in range(n) if not errors[i]]
    if stats is not None:
        for i in range(n):
            stats.record(str(errors[i]) if errors[i] else "", int(truncated[i]), int(extra[i]))
    if not keep:
        return None

    def col(name: str) -> list:
        return [columns[name][i] for i in keep]

    visual, audio = col("visual"), col("audio")
    num_steps = np.array([v.shape[0] for v in visual], dtype=np.int64)  # [B]
    length = int(num_steps.max())
    fps = np.asarray(col("fps"), dtype=np.float64)  # [B]
    mask = np.arange(length)[None, :] < num_steps[:, None]  # [B, T]
    return Batch(
        visual=torch.from_numpy(_pad(visual, length)),
        audio=torch.from_numpy(_pad(audio, length)),
        mask=torch.from_numpy(mask),
        labels=torch.from_numpy(_multi_hot(col("labels"), num_classes, col("video_id"))),
        video_id=[str(v) for v in col("video_id")],
        duration=torch.from_numpy(np.asarray(col("duration"), dtype=np.float64)),
        step_s=torch.from_numpy(np.asarray(col("feat_stride"), dtype=np.float64) / fps),
        offset_s=torch.from_numpy(np.asarray(col("window"), dtype=np.float64) / (2.0 * fps)),
        num_steps=torch.from_numpy(num_steps),
        segments=_parse_segments(col("segments"), col("video_id")) if "segments" in columns else None,
    )


def collate_rows(rows: Sequence[Mapping[str, Any]], num_classes: int, stats: SkipStats | None = None) -> Batch:
    """The no-Ray path: rows from ``iter_local_samples`` to a padded :class:`Batch`."""
    if not rows:
        raise ValueError("collate_rows: no rows")
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    batch = batch_from_columns(columns, num_classes, stats)
    if batch is None:
        raise ValueError("collate_rows: every row is a skipped bad sample")
    return batch


@functools.cache
def _padding_collate_class():
    from ray.data.collate_fn import NumpyBatchCollateFn

    class PaddingCollate(NumpyBatchCollateFn):
        """``iter_torch_batches(collate_fn=PaddingCollate(num_classes))``: numpy batch -> :class:`Batch`
        (None when every row of the batch was a skipped sample; the iterators below drop those)."""

        def __init__(self, num_classes: int, stats: SkipStats | None = None, pin_memory: bool = False):
            super().__init__()
            self.num_classes = num_classes
            self.stats = stats if stats is not None else SkipStats()
            self.pin_memory = pin_memory

        def __call__(self, batch: dict) -> Batch | None:
            out = batch_from_columns(batch, self.num_classes, self.stats)
            return out.pin_memory() if self.pin_memory and out is not None else out

    PaddingCollate.__module__ = __name__
    return PaddingCollate


def __getattr__(name: str):
    if name == "PaddingCollate":
        return _padding_collate_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def iter_train_batches(
    dataset_shard,
    batch_size: int,
    num_classes: int,
    shuffle_buffer: int = 0,
    seed: int = 0,
    device: Any = None,
    stats: SkipStats | None = None,
    max_skipped_fraction: float = 1.0,
    prefetch_batches: int = 2,
) -> Iterator[Batch]:
    """One pass over a Ray ``Dataset``/``DataIterator`` (e.g. ``ray.train.get_dataset_shard``) as padded batches.

    ``shuffle_buffer`` > 0 shuffles locally (seeded by ``seed``; vary it per epoch). Skipped rows are
    counted in ``stats``; at the end of the pass its summary is logged and the fraction checked.
    """
    stats = stats if stats is not None else SkipStats(split="train")
    to_gpu = device is not None and torch.device(device).type == "cuda"
    collate = _padding_collate_class()(num_classes, stats, pin_memory=to_gpu)  # pinned in Ray's prefetch threads
    kwargs = {"local_shuffle_buffer_size": shuffle_buffer, "local_shuffle_seed": seed} if shuffle_buffer > 0 else {}
    for batch in dataset_shard.iter_torch_batches(
        batch_size=batch_size, collate_fn=collate, drop_last=False, prefetch_batches=prefetch_batches, **kwargs
    ):
        if batch is not None:
            yield batch.to(device, only=MODEL_INPUTS) if device is not None else batch
    _finish(stats, max_skipped_fraction)


def _finish(stats: SkipStats, max_skipped_fraction: float) -> None:
    if stats.skipped or stats.truncated:
        log.warning("data: %s", stats.summary())
    stats.check(max_skipped_fraction)
