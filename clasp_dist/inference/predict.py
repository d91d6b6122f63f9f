"""Distributed evaluator: Ray Data `map_batches` over an actor pool that loads the model once per actor.

Every video of the split is predicted exactly once (``data.split_reader.check_all_seen`` against the manifest;
with ``data.bad_sample_policy=skip`` the skipped bad samples are counted, bounded and reported),
decoded to segments on the actors, and scored on the driver with the ActivityNet-exact metric.
`predict_local` runs the very same predictor in this process, for checks and small jobs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import Config, DataConfig, from_dict, to_dict
from ..data.batch import batch_from_columns
from ..data.filesystem import local_copy
from ..data.manifest import DatasetInfo, read_manifest
from ..data.roots import ensure_dataset
from ..data.sample_rows import SkipStats
from ..data.split_reader import check_all_seen, iter_local_samples, read_split
from ..evaluation.formats import ground_truth_from_metas, protocol_thresholds, write_predictions
from ..evaluation.metric import Segments, evaluate_detection
from ..evaluation.report import write_metrics_json
from ..model import build_model
from ..training.checkpoint import check_weights_match, load_inference_model
from .segments import decode_outputs

log = logging.getLogger(__name__)


@dataclass
class VideoPrediction:
    """One video's decoded segments plus what the timeline plots need."""

    video_id: str
    duration: float
    predictions: list[dict]  # [{"label": int, "t_start", "t_end", "score"}]
    segments: list[list[float]] | None = None  # ground truth [[s, e, cls], ...] (evaluation splits)
    agreement: list[float] | None = None  # per valid step
    anchors: list[int] | None = None  # anchor step indices
    step_s: float = 0.0
    offset_s: float = 0.0


@dataclass
class SplitPredictions:
    split: str
    videos: list[VideoPrediction] = field(default_factory=list)
    skipped: int = 0  # videos of the split not predicted: skipped bad samples (bad_sample_policy=skip)

    def records(self) -> list[dict]:
        return [{"video_id": v.video_id, **p} for v in self.videos for p in v.predictions]


@torch.no_grad()
def forward_batch(model, batch, bf16: bool):
    """The model's outputs for one batch at inference, on the batch's device; in bfloat16 autocast when
    `bf16` and that device is a GPU."""
    device = batch.visual.device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda"):
        return model(batch.visual, batch.audio, batch.mask, None)


class VideoPredictor:
    """Ray Data callable class (and plain callable): numpy batch of shard rows -> one row per video."""

    def __init__(self, spec: dict, weights, device: str = "cpu", with_signals: bool = False, threads: int = 0):
        if threads:
            torch.set_num_threads(threads)
        if not isinstance(weights, dict):  # an ObjectRef from ray.put
            import ray

            weights = ray.get(weights)
        self.cfg = from_dict(spec["config"])
        self.info = DatasetInfo(**spec["dataset"])
        self.device = torch.device(device)
        model = build_model(self.cfg, self.info)
        check_weights_match(weights, model, "inference weights")
        model.load_state_dict(weights)
        self.model = model.to(self.device).eval()
        self.with_signals = with_signals

    @torch.no_grad()
    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One output row per input row; a skipped bad sample (``error`` set) passes through with its
        message and no prediction, so that the driver counts it (``bad_sample_policy=skip``)."""
        n = len(rows["video_id"])
        errors = [str(e) if e else "" for e in rows.get("error", [""] * n)]
        batch = batch_from_columns(rows, self.info.num_classes)  # None when every row was skipped
        predicted = self._predict(batch) if batch is not None else {}
        skipped = [i for i in range(n) if errors[i]]
        columns = {key: list(values) for key, values in predicted.items()}
        for i in skipped:
            for key, value in _skipped_row(str(rows["video_id"][i]), errors[i], self.with_signals).items():
                columns.setdefault(key, []).append(value)
        return {
            key: np.array(values, dtype=np.float64 if key in FLOAT_COLUMNS else object)
            for key, values in columns.items()
        }

    def _predict(self, batch) -> dict[str, list]:
        batch = batch.to(self.device)
        out = forward_batch(self.model, batch, self.cfg.deepspeed.bf16)
        records = decode_outputs(
            out, batch.mask, batch.video_id, batch.step_s, batch.offset_s, batch.duration, self.cfg.decode
        )
        per_video: dict[str, list[dict]] = {vid: [] for vid in batch.video_id}
        for rec in records:
            per_video[rec["video_id"]].append({k: rec[k] for k in ("label", "t_start", "t_end", "score")})
        result = {
            "video_id": list(batch.video_id),
            "duration": batch.duration.cpu().tolist(),
            "step_s": batch.step_s.cpu().tolist(),
            "offset_s": batch.offset_s.cpu().tolist(),
            "predictions": [json.dumps(per_video[v]) for v in batch.video_id],
            "segments": [json.dumps(s) for s in batch.segments]
            if batch.segments is not None
            else ["null"] * len(batch),
            "error": [""] * len(batch),
        }
        if self.with_signals:
            result["signals"] = _signals_json(out, batch.mask)
        return result


FLOAT_COLUMNS = ("duration", "step_s", "offset_s")


def _skipped_row(video_id: str, error: str, with_signals: bool) -> dict:
    row = {
        "video_id": video_id,
        "duration": float("nan"),
        "step_s": 0.0,
        "offset_s": 0.0,
        "predictions": "[]",
        "segments": "null",
        "error": error,
    }
    return {**row, "signals": "null"} if with_signals else row


def _signals_json(out, mask: torch.Tensor) -> list[str]:
    rows = []
    for i in range(mask.shape[0]):
        n = int(mask[i].sum())
        agreement = out.agreement[i, :n].float().cpu().tolist() if out.agreement is not None else None
        anchors = (
            torch.nonzero(out.anchor_mask[i, :n]).flatten().cpu().tolist() if out.anchor_mask is not None else None
        )
        rows.append(json.dumps({"agreement": agreement, "anchors": anchors}))
    return rows


def _to_video(row: dict) -> VideoPrediction:
    signals = (json.loads(row["signals"]) if row.get("signals") else None) or {}
    segments = row.get("segments")
    return VideoPrediction(
        video_id=str(row["video_id"]),
        duration=float(row["duration"]),
        predictions=json.loads(row["predictions"]),
        segments=json.loads(segments) if isinstance(segments, str) else None,
        agreement=signals.get("agreement"),
        anchors=signals.get("anchors"),
        step_s=float(row["step_s"]),
        offset_s=float(row["offset_s"]),
    )


def model_spec(cfg: Config, info: DatasetInfo) -> dict:
    return {"config": to_dict(cfg), "dataset": asdict(info)}


def expected_videos(root: str, split: str, cfg: Config) -> int:
    return read_manifest(root, cfg.storage).splits[split].videos


def predict_split(
    weights: dict,
    cfg: Config,
    info: DatasetInfo,
    root: str,
    split: str,
    with_signals: bool = False,
    include_segments: bool | None = None,
) -> SplitPredictions:
    """Distributed inference over one split: every video exactly once (ground truth rides along for
    evaluation splits unless `include_segments=False`)."""
    import ray

    include_segments = split != "train" if include_segments is None else include_segments
    ds = read_split(root, split, cfg.data, cfg.storage, include_segments=include_segments)
    use_gpu = cfg.eval.actor_num_gpus > 0
    predicted = ds.map_batches(
        VideoPredictor,
        fn_constructor_kwargs={
            "spec": model_spec(cfg, info),
            "weights": ray.put(weights),
            "device": "cuda" if use_gpu else "cpu",
            "with_signals": with_signals,
            "threads": max(1, int(cfg.eval.actor_num_cpus)),
        },
        batch_size=cfg.eval.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=cfg.eval.num_actors),
        num_cpus=cfg.eval.actor_num_cpus,
        num_gpus=cfg.eval.actor_num_gpus or None,
    )
    rows = list(predicted.iter_rows())
    videos = [_to_video(row) for row in rows if not row["error"]]
    skipped = _check_exactly_once(videos, [str(row["error"]) for row in rows if row["error"]], root, split, cfg)
    return SplitPredictions(split, sorted(videos, key=lambda v: v.video_id), skipped)


def predict_local(
    weights: dict,
    cfg: Config,
    info: DatasetInfo,
    root: str,
    split: str,
    with_signals: bool = False,
    device: str = "cpu",
) -> SplitPredictions:
    """The same predictor in this process (no Ray) on `device`, over the split in manifest order."""
    predictor = VideoPredictor(model_spec(cfg, info), weights, device=device, with_signals=with_signals)
    videos: list[VideoPrediction] = []
    stats = SkipStats(split=split)  # skipped rows never reach us here: the reader drops and counts them
    rows = iter_local_samples(root, split, cfg.data, cfg.storage, include_segments=split != "train", stats=stats)
    for chunk in chunks(rows, cfg.eval.batch_size):
        out = predictor(_columns(chunk))
        videos.extend(_to_video({k: out[k][i] for k in out}) for i in range(len(chunk)))
    skipped = _check_exactly_once(videos, stats.messages, root, split, cfg)
    return SplitPredictions(split, sorted(videos, key=lambda v: v.video_id), skipped)


def chunks(rows: Iterable[dict], size: int):
    """Lists of `size` rows (the last one shorter) from an iterable."""
    chunk: list[dict] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _columns(rows: list[dict]) -> dict[str, np.ndarray]:
    columns: dict[str, np.ndarray] = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        columns[key] = arr
    return columns


def _check_exactly_once(
    videos: list[VideoPrediction], skip_messages: list[str], root: str, split: str, cfg: Config
) -> int:
    """Every video of the split exactly once (``data.split_reader.check_all_seen``). Under
    ``bad_sample_policy=skip`` the videos not predicted are the skipped ones: counted, bounded by
    ``data.max_skipped_fraction`` and reported, as on the training path. Returns the skipped count."""
    expected = expected_videos(root, split, cfg)
    ids = [v.video_id for v in videos]
    skipped = max(0, expected - len(set(ids))) if cfg.data.bad_sample_policy == "skip" else 0
    check_all_seen(ids, expected, skipped, split=f"{split}' of '{root}")
    if skipped:
        stats = SkipStats(split=split, seen=expected, skipped=skipped, messages=list(skip_messages[:20]))
        log.warning("evaluation: %s; the skipped videos are not scored", stats.summary())
        stats.check(cfg.data.max_skipped_fraction)
    return skipped


def ground_truth_of(predictions: SplitPredictions, info: DatasetInfo):
    """Ground truth from the shards' meta.json segments that travelled with the predictions."""
    metas = [{"video_id": v.video_id, "duration": v.duration, "segments": v.segments or []} for v in predictions.videos]
    return ground_truth_from_metas(metas, info.classes)


def score(predictions: SplitPredictions, info: DatasetInfo, cfg: Config, tiou_thresholds=None):
    """ActivityNet-exact mAP of the split's predictions against its shard ground truth."""
    gt = ground_truth_of(predictions, info)
    video_ids = [v.video_id for v in predictions.videos]
    preds = Segments.from_records(predictions.records(), class_names=info.classes, videos=video_ids)
    thresholds = tiou_thresholds or cfg.eval.tiou_thresholds or protocol_thresholds(gt)
    return evaluate_detection(gt, preds, tuple(thresholds), video_ids=video_ids)


def evaluate_weights(weights: dict, cfg: Config, info: DatasetInfo, root: str, split: str):
    """Predict a split with the distributed evaluator and score it (used by training for validation)."""
    return score(predict_split(weights, cfg, info, root, split), info, cfg)


def load_for_evaluation(checkpoint: str, overrides: Iterable[str]):
    """The checkpoint's model and resolved config, with `key=value` overrides applied to both (e.g.
    eval.num_actors, model.window): the model in this process and the one the Ray actors rebuild agree."""
    # s3:// and gs:// too; a checkpoint trained with the EMA keeps its inference weights in ema.pt only
    with local_copy(checkpoint, names=("model.json", "weights.pt", "ema.pt")) as directory:
        return load_inference_model(directory, overrides=overrides)


def writable_here(cfg: Config, overrides: Iterable[str]) -> Config:
    """A checkpoint's model.json never decides where this command writes: `data.cache_dir` (where a missing
    semi-synthetic dataset is generated) is this machine's default unless given on the command line."""
    if any(o.split("=", 1)[0].strip() == "data.cache_dir" for o in overrides):
        return cfg
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, cache_dir=DataConfig().cache_dir))


def evaluate_checkpoint(
    checkpoint: str,
    data_root: str | None,
    split: str,
    out_dir: str | None = None,
    plot: int = 0,
    tiou_thresholds=None,
    overrides: Iterable[str] = (),
):
    """CLI path: checkpoint/export dir -> DetectionResult; with `out_dir`: predictions JSON, metrics
    JSON and (`plot` > 0) timeline PNGs for the first `plot` videos."""
    from ..viz import confined_path  # matplotlib

    model, cfg, info = load_for_evaluation(checkpoint, overrides)
    root = ensure_dataset(writable_here(cfg, overrides).data, cfg.storage, root=data_root)  # its data keys find it
    predictions = predict_split(model.state_dict(), cfg, info, root, split, with_signals=plot > 0)
    result = score(predictions, info, cfg, tiou_thresholds)
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_predictions(
            confined_path(out, f"predictions_{split}", ".json"),
            predictions.records(),
            info.classes,
            videos=[v.video_id for v in predictions.videos],
        )
        write_metrics_json(confined_path(out, f"metrics_{split}", ".json"), result)
        if plot:
            plot_timelines(predictions, info, out / "timelines", plot)
    return result


def predict_checkpoint(
    checkpoint: str, data_root: str, split: str, out_path: str, overrides: Iterable[str] = ()
) -> tuple[int, int]:
    """Predictions only (no ground truth needed): write the ActivityNet results JSON; (videos, segments)."""
    model, cfg, info = load_for_evaluation(checkpoint, overrides)
    predictions = predict_split(model.state_dict(), cfg, info, data_root, split, include_segments=False)
    records = predictions.records()
    write_predictions(out_path, records, info.classes, videos=[v.video_id for v in predictions.videos])
    return len(predictions.videos), len(records)


def plot_timelines(predictions: SplitPredictions, info: DatasetInfo, out_dir: Path, count: int) -> list[Path]:
    """Timeline PNGs of the first `count` videos, one file per video id, always inside `out_dir`."""
    from ..viz import confined_path, plot_timeline  # matplotlib

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for video in predictions.videos[:count]:
        path = confined_path(out_dir, video.video_id, ".png")
        segments = [(p["t_start"], p["t_end"], p["label"], p["score"]) for p in video.predictions]
        plot_timeline(
            path,
            video.video_id,
            video.duration,
            video.segments or [],
            segments,
            info.classes,
            agreement=video.agreement,
            anchors=video.anchors,
            step_s=video.step_s,
            offset_s=video.offset_s,
        )
        paths.append(path)
    return paths
