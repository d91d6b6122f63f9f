"""Semi-synthetic UnAV-100 (docs/data.md): features made for the real annotations.

Real durations, event boundaries, co-occurrence and class imbalance come from the annotation file;
the features are built per video, per stream ``m`` in {visual, audio} with ``D_m`` dims:

    x_m[t] = scene_m + noise_std * ar1_m[t]
             + sum_events   amp_m * g_e * env_e,m(t) * proto_m[class_e]
             + sum_distractors (one stream only, same form)

* ``proto_m[c]`` has per-dim rms 1; classes come in families (``family_size``) whose prototypes share
  a component with correlation ``family_corr_m``: confusable classes.
* ``amp_m = snr_m * noise_std / sqrt(D_m)``: an event at unit gain has matched-filter SNR ``snr_m``
  per step whatever ``D_m`` is, so profiles differ in size, not in difficulty.
* ``ar1`` is AR(1) noise (coefficient ``noise_ar``, unit variance); ``scene_m`` a per-video constant.
* Each event gets independent log-normal gains per stream, sigmoid on/off ramps (``ramp_s``) and an
  audio onset/offset jitter (``jitter_s``) relative to the visual span.
* Modality-only distractors, ``Poisson(distractor_rate * events)`` per video, gain
  ``distractor_gain`` x an event's: an off-screen sound (audio only) or a silent visible object
  (visual only) of a class the video contains, placed off that class's events when possible, or a
  class the video does not contain (from a labelled class's family half of the time) in one
  stream. They are neither events nor labels: a single-stream model fires on them, and a model that
  sums the streams confuses a strong distractor with a weak event; agreement separates them.

Calibration (``small`` profile, 120 validation videos, an *oracle* that knows the prototypes and
scores each (step, class) by projection): step-level AP visual-only 0.48, audio-only 0.52, sum of
streams 0.70, min of streams (agreement) 0.76; without distractors 0.66 / 0.73 / 0.88 / 0.82. A
learned weakly-supervised model sits well below the oracle; ``tests/data/test_synthetic.py`` keeps
the ordering (agreement > sum > one stream) checked.

Everything is a pure function of ``(seed, video_id)`` (per-video RNG), so bytes do not depend on
worker count or order. :func:`generate_dataset` writes shards; ``data.roots.ensure_dataset`` finds
or generates the cached one a run reads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .annotations import Annotations, VideoAnnotation, load_annotations, packaged_unav100_path
from .errors import DataError
from .format import VideoSample
from .grid import I3D_GRID, ONEPEACE_GRID, Grid
from .splits import SPLITS
from .writer import DEFAULT_SHARD_SIZE, write_dataset

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1


@dataclass(frozen=True)
class SynthProfile:
    """Size and difficulty of a generated dataset."""

    name: str
    visual_dim: int
    audio_dim: int
    grid: Grid
    limit_per_split: dict[str, int | None] = field(default_factory=dict)
    """Videos per split (first N by id); a missing split or None = all."""
    visual_snr: float = 6.0
    """Matched-filter SNR per step of a unit-gain event in the visual stream."""
    audio_snr: float = 5.0
    noise_std: float = 1.0
    noise_ar: float = 0.7
    """AR(1) coefficient of the background noise (temporal correlation)."""
    scene_std: float = 0.5
    """Per-dim std of the per-video constant scene vector."""
    family_size: int = 4
    family_corr_visual: float = 0.5
    family_corr_audio: float = 0.4
    gain_sigma: float = 0.35
    """Log-normal spread of per-event, per-stream gains."""
    ramp_s: float = 0.2
    jitter_s: float = 0.15
    distractor_rate: float = 1.0
    """Expected modality-only distractors per annotated event."""
    distractor_gain: float = 1.7
    distractor_mix: tuple[float, float, float] = (0.35, 0.35, 0.30)
    """Probabilities of off-screen sound, silent visible object, absent class."""
    distractor_len_s: tuple[float, float] = (1.0, 8.0)
    shard_size: int = DEFAULT_SHARD_SIZE


PROFILES: dict[str, SynthProfile] = {
    "tiny": SynthProfile(
        "tiny",
        32,
        16,
        I3D_GRID,
        {"train": 48, "validation": 16, "test": 16},
        visual_snr=7.0,
        audio_snr=6.0,
        shard_size=8,
    ),
    "small": SynthProfile("small", 256, 64, I3D_GRID, {"train": 600, "validation": 200, "test": 200}, shard_size=64),
    # Harder regimes (docs/sweeps.md), same size and features as `small`; `small` itself stays as it is.
    # `distract`: 2.5 one-stream distractors per event, 2-14 s long, half of them off-screen sounds of a labelled
    # class, and audio onsets/offsets 0.5 s (std) off the visual span: agreement is needed more, and is blurrier.
    "distract": SynthProfile(
        "distract",
        256,
        64,
        I3D_GRID,
        {"train": 600, "validation": 200, "test": 200},
        jitter_s=0.5,
        distractor_rate=2.5,
        distractor_mix=(0.5, 0.3, 0.2),
        distractor_len_s=(2.0, 14.0),
        shard_size=64,
    ),
    # `scarce`: half the training videos (about 3 per class), lower SNR in both streams and tighter class
    # families (more confusable classes): less signal to learn from, more classes to confuse.
    "scarce": SynthProfile(
        "scarce",
        256,
        64,
        I3D_GRID,
        {"train": 300, "validation": 200, "test": 200},
        visual_snr=4.5,
        audio_snr=3.75,
        family_corr_visual=0.7,
        family_corr_audio=0.6,
        shard_size=64,
    ),
    "i3d": SynthProfile("i3d", 2048, 128, I3D_GRID),
    "onepeace": SynthProfile("onepeace", 1536, 1536, ONEPEACE_GRID, audio_snr=6.0),
}


def get_profile(profile: str | SynthProfile) -> SynthProfile:
    if isinstance(profile, SynthProfile):
        return profile
    if profile not in PROFILES:
        raise DataError(f"unknown synthetic profile {profile!r} (choose from {', '.join(PROFILES)})")
    return PROFILES[profile]


# -------------------------------------------------------------------------------- class prototypes
@dataclass(frozen=True)
class ClassBank:
    """Per-class prototypes (per-dim rms 1) and family ids, a function of (seed, profile dims)."""

    visual: np.ndarray  # [C, Dv] float32
    audio: np.ndarray  # [C, Da] float32
    family: np.ndarray  # [C] int64


def make_class_bank(profile: SynthProfile, num_classes: int, seed: int) -> ClassBank:
    rng = np.random.default_rng([seed, 0xC1A55])
    family = np.empty(num_classes, dtype=np.int64)
    family[rng.permutation(num_classes)] = np.arange(num_classes) // profile.family_size
    n_fam = int(family.max()) + 1

    def protos(dim: int, corr: float) -> np.ndarray:
        shared = rng.standard_normal((n_fam, dim))  # [F, D]
        own = rng.standard_normal((num_classes, dim))  # [C, D]
        p = math.sqrt(corr) * shared[family] + math.sqrt(1 - corr) * own  # [C, D]
        p *= math.sqrt(dim) / np.linalg.norm(p, axis=1, keepdims=True)
        return p.astype(np.float32)

    return ClassBank(
        protos(profile.visual_dim, profile.family_corr_visual),
        protos(profile.audio_dim, profile.family_corr_audio),
        family,
    )


# ------------------------------------------------------------------------------------ one video
@dataclass(frozen=True)
class Presence:
    """A class drawn into one or both streams over a span (an event or a distractor)."""

    cls: int
    visual: tuple[float, float, float] | None
    """(start_s, end_s, gain) in the visual stream, or None."""
    audio: tuple[float, float, float] | None
    kind: str
    """'event', 'offscreen_sound', 'silent_object' or 'absent_class'."""


def video_rng(seed: int, video_id: str) -> np.random.Generator:
    digest = hashlib.sha256(video_id.encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def _ar1(rng: np.random.Generator, steps: int, dim: int, coef: float) -> np.ndarray:
    x = rng.standard_normal((steps, dim), dtype=np.float32)  # [T, D] innovations, overwritten in place
    scale = np.float32(math.sqrt(1.0 - coef * coef))
    x[1:] *= scale
    for t in range(1, steps):
        x[t] += np.float32(coef) * x[t - 1]
    return x


def _envelope(centres: np.ndarray, start: float, end: float, ramp: float) -> np.ndarray:
    """Soft box over [start, end] with sigmoid ramps, ``[T]``."""
    on = (centres - start) / ramp
    off = (end - centres) / ramp
    return 1.0 / (1.0 + np.exp(-np.clip(on, -30, 30))) / (1.0 + np.exp(-np.clip(off, -30, 30)))


def _events(ann: VideoAnnotation, p: SynthProfile, rng) -> list[Presence]:
    out = []
    for s, e, c in ann.segments:
        g_v, g_a = np.exp(p.gain_sigma * rng.standard_normal(2))
        js, je = p.jitter_s * rng.standard_normal(2)
        a_s = min(max(0.0, s + js), ann.duration)
        a_e = max(min(ann.duration, e + je), a_s + 1e-3)
        out.append(Presence(int(c), (s, e, float(g_v)), (a_s, a_e, float(g_a)), "event"))
    return out


def _distractor_span(ann: VideoAnnotation, p: SynthProfile, rng, avoid: list[tuple[float, float]]):
    length = min(ann.duration, rng.uniform(*p.distractor_len_s))
    for _ in range(6):
        start = rng.uniform(0.0, ann.duration - length)
        if not any(start < e and start + length > s for s, e in avoid):
            break
    return float(start), float(start + length)


def _distractors(ann: VideoAnnotation, p: SynthProfile, bank: ClassBank, rate: float, rng) -> list[Presence]:
    labels = list(ann.labels)
    num_classes = len(bank.family)
    out = []
    for _ in range(rng.poisson(rate * len(ann.segments))):
        kind = ("offscreen_sound", "silent_object", "absent_class")[rng.choice(3, p=np.asarray(p.distractor_mix))]
        if kind == "absent_class" and len(labels) == num_classes:
            kind = "offscreen_sound" if rng.random() < 0.5 else "silent_object"  # every class is present
        if kind == "absent_class" or not labels:
            cls = _absent_class(labels, bank, num_classes, rng)
            stream = "audio" if rng.random() < 0.5 else "visual"
            kind = "absent_class"
        else:
            cls = int(rng.choice(labels))
            stream = "audio" if kind == "offscreen_sound" else "visual"
        s, e = _distractor_span(ann, p, rng, [(s, e) for s, e, c in ann.segments if c == cls])
        span = (s, e, float(p.distractor_gain * np.exp(p.gain_sigma * rng.standard_normal())))
        out.append(Presence(cls, span if stream == "visual" else None, span if stream == "audio" else None, kind))
    return out


def _absent_class(labels: list[int], bank: ClassBank, num_classes: int, rng) -> int:
    others = np.setdiff1d(np.arange(num_classes), labels)
    if labels and rng.random() < 0.5:
        kin = others[np.isin(bank.family[others], bank.family[labels])]
        if kin.size:
            return int(rng.choice(kin))
    return int(rng.choice(others))


def synthesize_video(
    ann: VideoAnnotation,
    p: SynthProfile,
    bank: ClassBank,
    seed: int,
    distractor_rate: float | None = None,
    grid: Grid | None = None,
):
    """``(visual [T, Dv] f32, audio [T, Da] f32, presences)`` of one video; pure in (seed, video id)."""
    grid = grid or p.grid
    rate = p.distractor_rate if distractor_rate is None else distractor_rate
    rng = video_rng(seed, ann.video_id)
    steps = grid.num_steps(ann.duration)
    centres = grid.centres(steps)  # [T]
    streams = {}
    for name, dim in (("visual", p.visual_dim), ("audio", p.audio_dim)):
        scene = p.scene_std * rng.standard_normal(dim, dtype=np.float32)  # [D]
        streams[name] = _ar1(rng, steps, dim, p.noise_ar) * np.float32(p.noise_std) + scene  # [T, D]
    presences = _events(ann, p, rng) + _distractors(ann, p, bank, rate, rng)
    amp = {
        "visual": p.visual_snr * p.noise_std / math.sqrt(p.visual_dim),
        "audio": p.audio_snr * p.noise_std / math.sqrt(p.audio_dim),
    }
    protos = {"visual": bank.visual, "audio": bank.audio}
    for pres in presences:
        for name in ("visual", "audio"):
            span = getattr(pres, name)
            if span is None:
                continue
            env = _envelope(centres, span[0], span[1], p.ramp_s) * (amp[name] * span[2])  # [T]
            live = env > 1e-4
            streams[name][live] += env[live, None].astype(np.float32) * protos[name][pres.cls]  # [t, D]
    return streams["visual"], streams["audio"], presences


@dataclass(frozen=True)
class SynthSampler:
    """Picklable ``annotation -> VideoSample`` for the parallel shard writer."""

    profile: SynthProfile
    bank: ClassBank
    seed: int
    distractor_rate: float

    def __call__(self, ann: VideoAnnotation) -> VideoSample:
        visual, audio, _ = synthesize_video(ann, self.profile, self.bank, self.seed, self.distractor_rate)
        return VideoSample(ann.video_id, visual, audio, ann.duration, ann.labels, ann.segments)


# ------------------------------------------------------------------------------------ datasets
def resolve_limits(profile: SynthProfile, limit_per_split: None | int | dict) -> dict[str, int | None]:
    """None = the profile's limits; an int applies to every split; a dict overrides per split."""
    if limit_per_split is None:
        return dict(profile.limit_per_split)
    if isinstance(limit_per_split, int):
        return {s: limit_per_split for s in SPLITS}
    return {**profile.limit_per_split, **limit_per_split}


def generate_dataset(
    out_root: str,
    profile: str | SynthProfile = "small",
    seed: int = 0,
    limit_per_split: None | int | dict = None,
    distractor_rate: float | None = None,
    storage_cfg=None,
    annotations: str | None = None,
    workers: int | None = None,
    shard_size: int | None = None,
    progress: bool = True,
) -> str:
    """Generate the semi-synthetic dataset under ``out_root`` (local or s3://); returns ``out_root``."""
    p = get_profile(profile)
    rate = p.distractor_rate if distractor_rate is None else float(distractor_rate)
    if rate < 0:
        raise DataError("distractor_rate must be >= 0")
    ann = load_annotations(annotations)
    limits = resolve_limits(p, limit_per_split)
    bank = make_class_bank(p, len(ann.classes), seed)
    workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    write_dataset(
        out_root,
        dataset="unav100-synthetic",
        classes=ann.classes,
        visual_dim=p.visual_dim,
        audio_dim=p.audio_dim,
        grid=p.grid,
        split_items=ann.limited(limits),
        make_sample=SynthSampler(p, bank, seed, rate),
        shard_size=shard_size or p.shard_size,
        workers=workers,
        storage_cfg=storage_cfg,
        progress=progress,
        extra={"synth": synth_params(p, seed, limits, rate, annotations)},
    )
    return out_root


def synth_params(p: SynthProfile, seed: int, limits: dict, rate: float, annotations: str | None) -> dict:
    """What identifies a generated dataset (stored in the manifest under ``synth``)."""
    ann_path = Path(annotations) if annotations else packaged_unav100_path()
    profile = {k: v for k, v in asdict(replace(p, distractor_rate=rate)).items() if k not in ("limit_per_split",)}
    params = {
        "generator_version": GENERATOR_VERSION,
        "profile": profile,
        "seed": seed,
        "limit_per_split": {s: limits.get(s) for s in SPLITS},
        "annotations_sha256": hashlib.sha256(ann_path.read_bytes()).hexdigest(),
    }
    return json.loads(json.dumps(params))  # JSON-normal (tuples -> lists) to compare with a stored manifest


__all__ = [
    "PROFILES",
    "SynthProfile",
    "ClassBank",
    "Presence",
    "Annotations",
    "make_class_bank",
    "synthesize_video",
    "generate_dataset",
    "get_profile",
    "resolve_limits",
]
