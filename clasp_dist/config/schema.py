"""Typed configuration: frozen nested dataclasses, one docstring line per field.

Validation (types, literals, ranges declared with pydantic's ``Field`` constraints, unknown keys) is done by
pydantic's dataclass support, which names the offending dotted key in its error; each field's docstring is its
pydantic description (``use_attribute_docstrings``), shown by ``--help``. Cross-field rules live in ``__post_init__``.
Derived values (DeepSpeed batch arithmetic, grid step in seconds) are computed by functions
elsewhere and never written back here.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from pydantic.dataclasses import dataclass

from .. import limits

_STRICT = ConfigDict(extra="forbid", validate_default=True, use_attribute_docstrings=True)


def section(cls):
    """Frozen, validated, unknown keys rejected, attribute docstrings as field descriptions."""
    return dataclass(frozen=True, config=_STRICT)(cls)


def _default(factory):
    return dataclasses.field(default_factory=factory)


@section
class DataConfig:
    root: str = ""
    """Dataset root (local path, s3:// or gs://bucket/prefix) holding manifest.json; empty = generate `synth_profile`."""
    synth_profile: Literal["tiny", "small", "distract", "scarce", "i3d", "onepeace"] = "small"
    """Semi-synthetic profile generated when `root` is empty."""
    synth_limit_per_split: PositiveInt | None = None
    """Videos per split for the generated data (None = all annotated videos)."""
    synth_seed: int = 0
    """Seed of the semi-synthetic generator."""
    synth_distractor_rate: float | None = None
    """Modality-only distractors per event for the generated data (None = profile default)."""
    cache_dir: str = "~/.cache/clasp_dist/datasets"
    """Where generated datasets are cached (keyed by profile, limit and seed); s3://... on a multi-node cluster."""
    bad_sample_policy: Literal["error", "skip"] = "error"
    """On a bad sample: raise naming shard/sample/field, or skip it and count it."""
    max_skipped_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01
    """With policy `skip`, fail once more than this fraction of a split was skipped."""
    length_mismatch_tolerance: int = 1
    """Audio/visual length difference (steps) truncated to the shorter stream and counted; more is an error."""
    step_count_tolerance: NonNegativeInt = 8
    """Steps a video's T may differ from the count its duration gives on the grid (docs/data.md#format); more is a bad sample."""
    step_count_tolerance_fraction: NonNegativeFloat = 0.1
    """... or this fraction of that count, whichever is larger (T is checked before the array is allocated)."""
    max_member_mb: PositiveFloat = 64.0
    """Bound on one .npy tar member (MiB), read from the tar header before the member is; larger is refused."""
    strict_members: bool = False
    """Refuse samples carrying members other than visual.npy/audio.npy/meta.json (default: skip them unread, counted)."""
    read_num_cpus: NonNegativeFloat = 0.25
    """CPUs reserved per Ray Data read/decode task (fractional so reads never starve train workers)."""
    shuffle_buffer: int = 64
    """Local shuffle buffer (videos) for the training stream; 0 disables shuffling."""


@section
class StorageConfig:
    endpoint_url: str | None = None
    """S3-compatible endpoint (e.g. http://127.0.0.1:9000); None = AWS_ENDPOINT_URL or AWS itself."""
    region: str | None = None
    """S3 bucket region; None = AWS_REGION, else asked from the bucket (AWS_DEFAULT_REGION if that fails)."""
    anon: bool = False
    """Anonymous (unsigned) S3/GCS access: public buckets, or a local GCS emulator."""
    retries: int = 5
    """Attempts per S3/GCS request before a read or write fails (botocore standard mode; gcsfs backoff)."""
    gcs_endpoint_url: str | None = None
    """GCS-compatible endpoint (e.g. http://127.0.0.1:4443); None = STORAGE_EMULATOR_HOST or Google itself."""
    gcs_project: str | None = None
    """GCP project for gs:// (only bucket listing/creation needs it); None = GOOGLE_CLOUD_PROJECT."""


@section
class ModelConfig:
    d_model: Annotated[int, Field(ge=1, le=limits.MAX_D_MODEL)] = 256
    """Hidden width d of every stream."""
    n_heads: Annotated[int, Field(ge=1, le=limits.MAX_HEADS)] = 4
    """Attention heads in encoder and propagation blocks."""
    n_self_layers: Annotated[int, Field(ge=1, le=limits.MAX_LAYERS)] = 2
    """Pre-LN self-attention blocks per modality."""
    ffn_mult: Annotated[int, Field(ge=1, le=limits.MAX_FFN_MULT)] = 4
    """FFN hidden width as a multiple of d_model."""
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    """Dropout in attention and FFN blocks."""
    max_len: Annotated[int, Field(ge=1, le=limits.MAX_SEQ_LEN)] = 4096
    """Longest sequence (steps) the sinusoidal position table covers."""
    cls_prior: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.01
    """Initial class probability of every CAS head (bias = -log((1-p)/p)); speeds up early training."""
    mil_pooling: Literal["topk", "attentive"] = "topk"
    """Video score pooling of a CAS: top-k mean (k = max(1, T // mil_ratio)) or attentive."""
    mil_ratio: PositiveInt = 8
    """r in the top-k MIL: k = max(1, T // r) over valid steps."""
    use_meae: bool = True
    """Mutual Event Agreement Evaluation (per-step audio/visual agreement)."""
    discrepancy: Literal["l1", "js", "argmax"] = "l1"
    """MEAE discrepancy: mean |sig(Sa)-sig(Sv)| over K, JS over softmax(K + bg), or argmax mismatch."""
    anchor_score: Literal["agreement_confidence", "agreement"] = "agreement_confidence"
    """Anchor score alpha_t: s_t * e_t, or agreement s_t alone."""
    meae_evidence: Literal["fused", "unimodal"] = "fused"
    """Heads MEAE's agreement compares: the base heads (after the cross-modal block) or unimodal heads before it."""
    meae_confidence: Literal["fused", "unimodal"] = "fused"
    """Heads MEAE's confidence e_t reads: the base heads, or the unimodal heads before the cross-modal block."""
    inference_class_threshold: float = 0.1
    """At inference, MEAE's class set K = base-predicted classes with probability >= this (top-1 at least)."""
    csai_global: bool = True
    """CSAI global-video anchors: the top ceil(T / global_ratio) steps by alpha."""
    global_ratio: PositiveInt = 8
    """Global anchors per video = ceil(T_valid / global_ratio)."""
    csai_local: bool = True
    """CSAI local-window anchors: each window's best step if alpha >= local_tau."""
    window: PositiveInt = 16
    """Local-window size w (steps)."""
    local_tau: float = 0.1
    """Minimum alpha of a local-window anchor: a fraction of the video's alpha range (relative) or alpha itself."""
    local_tau_mode: Literal["relative", "absolute"] = "relative"
    """relative: floor = min + local_tau (max - min) of the video's alpha, comparable across anchor scores."""
    anchor_fusion: Literal["mlp", "mean"] = "mlp"
    """Cross-modal anchor integration: LN(ReLU(W[a;v])) or the mean of a and v."""
    use_atp: bool = True
    """Anchor-based Temporal Propagation with refined CAS heads and L_prop."""
    propagation: Literal["attention", "thresholded"] = "attention"
    """ATP type: full cross-attention to anchors, or with affinities below prop_threshold dropped."""
    prop_threshold: float = 0.0
    """Cosine-similarity floor of thresholded propagation."""

    def __post_init__(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"model.d_model={self.d_model} must be divisible by model.n_heads={self.n_heads}")
        if self.use_atp and not self.use_meae:
            raise ValueError("model.use_atp needs model.use_meae (anchors come from agreement)")
        if self.use_atp and not (self.csai_global or self.csai_local):
            raise ValueError("model.use_atp needs model.csai_global or model.csai_local")

    @property
    def clasp_enabled(self) -> bool:
        return self.use_meae and self.use_atp

    @property
    def unimodal_heads(self) -> bool:
        """Whether the model builds per-stream heads on the encoder's unimodal features (for MEAE)."""
        return self.use_meae and "unimodal" in (self.meae_evidence, self.meae_confidence)


@section
class LossConfig:
    lambda_p: float = 1.0
    """Weight of the propagation loss: L = L_base + lambda_p * L_prop."""
    lambda_u: float = 1.0
    """Weight of the unimodal heads' MIL loss L_uni (added only when the model has unimodal heads)."""


@section
class OptimConfig:
    lr: PositiveFloat = 1e-4
    """Peak AdamW learning rate."""
    weight_decay: float = 1e-4
    """AdamW weight decay, applied to weight matrices only (not biases, norms, embeddings)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    warmup_epochs: float = 1.0
    """Linear warm-up length in epochs (fractions allowed)."""
    min_lr_ratio: float = 0.0
    """Cosine floor as a fraction of the peak lr."""
    grad_clip: float = 1.0
    """Gradient norm clip (0 disables)."""
    ema_decay: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.999
    """EMA decay of the weights used for evaluation (0 disables EMA)."""
    ema_every: NonNegativeInt = 0
    """Optimizer steps between EMA updates, decay applied as decay**k (0 = every step; every 10 under ZeRO-3)."""
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"
    """Peak lr at a global batch B != train.batch_size: lr x B/batch_size (linear), x its sqrt (sqrt), or lr (none)."""


@section
class DeepSpeedConfig:
    zero_stage: Literal[0, 1, 2, 3] = 0
    """ZeRO stage."""
    bf16: bool = False
    """bf16 mixed precision (use on GPUs that support it)."""
    micro_batch_size: NonNegativeInt = 8
    """Videos per worker per forward pass (0 = batch_size / workers; docs/training.md, batch size)."""
    grad_accum: NonNegativeInt = 0
    """Micro-batches per step: 0 = batch_size / (micro x workers), a fixed global batch; N = micro x workers x N."""


@section
class TrainConfig:
    epochs: int = 12
    """Training epochs."""
    batch_size: PositiveInt = 16
    """Global batch in videos (micro x grad_accum x workers); with deepspeed.grad_accum >= 1, the batch optim.lr is for."""
    seed: int = 0
    """Seed for weights, data order and dropout."""
    num_workers: PositiveInt = 1
    """Ray Train workers."""
    use_gpu: bool = False
    """One GPU per worker."""
    cpus_per_worker: float = 0.5
    """CPUs reserved per train worker (fractional on small machines so Ray Data can read)."""
    worker_resources: dict[str, float] = _default(dict)
    """Extra Ray resources per train worker, e.g. {accelerator_type:A10G: 0.01} to pick a node type."""
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    """Placement of the workers over nodes (Ray placement group strategy; STRICT_SPREAD = one per node)."""
    eval_every: int = 2
    """Evaluate on validation every N epochs (and after the last)."""
    checkpoint_every: PositiveInt = 1
    """Checkpoint every N epochs, and at every validated epoch and the last (resume restarts after the latest)."""
    torch_threads: int = 0
    """torch intra-op threads per worker (0 = int(cpus_per_worker), at least 1)."""
    max_failures: int = 1
    """Ray Train restarts of the worker group after a worker failure."""
    log_every_steps: int = 20
    """Scalars to TensorBoard every N optimizer steps."""
    progress_bar: Literal["auto", "on", "off"] = "auto"
    """Per-epoch progress bar on rank 0: auto = only on an interactive terminal."""


@section
class DecodeConfig:
    class_threshold: float = 0.1
    """Keep video classes with p_c = sqrt(p_a' p_v') >= this."""
    max_classes: int = 5
    """At most this many classes per video (at least the top one)."""
    loc_thresholds: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    """Thresholds on the localisation signal whose runs become proposals."""
    loc_threshold_mode: Literal["absolute", "relative"] = "absolute"
    """loc_thresholds as signal values, or as fractions of each video-class signal's own [min, max] range."""
    video_score: Literal["final", "base"] = "final"
    """Video class scores p_c (class selection, OIC bonus) from the final (refined) heads or the base heads."""
    oic_margin: float = 0.25
    """Outer-inner-contrast margin as a fraction of the run length, each side."""
    oic_class_weight: float = 0.2
    """Weight of p_c added to the outer-inner contrast."""
    nms_sigma: float = 0.4
    """Gaussian soft-NMS sigma."""
    max_segments: int = 100
    """Predictions kept per video."""


@section
class EvalConfig:
    tiou_thresholds: tuple[float, ...] | None = None
    """tIoU thresholds; None = the dataset's protocol (UnAV-100 0.1:0.9, ActivityNet 0.5:0.95)."""
    batch_size: int = 16
    """Videos per inference batch."""
    num_actors: int = 1
    """Inference actors in the pool (each loads the model once)."""
    actor_num_cpus: float = 0.5
    """CPUs per inference actor."""
    actor_num_gpus: float = 0.0
    """GPUs per inference actor."""
    use_ema: bool = True
    """Evaluate with the EMA weights when present."""


@section
class RunConfig:
    name: str = "default"
    """Run name: rerunning with the same name (and storage_path) resumes."""
    storage_path: str = "runs"
    """Where Ray Train writes checkpoints (local path, s3:// or gs://)."""
    output_dir: str = "runs"
    """Local directory for the run directory (config, metrics, TensorBoard, exported weights)."""
    keep_checkpoints: int = 2
    """Checkpoints kept (the best by validation mAP and the latest are always among them)."""
    resume_changes: tuple[str, ...] = ()
    """Keys allowed to differ from the run's saved config when resuming it, e.g. [train.epochs]."""

    def __post_init__(self):
        limits.check_plain_name(self.name, "run.name")  # a folder name under output_dir and storage_path


@section
class TrackingConfig:
    mlflow_uri: str | None = None
    """MLflow tracking URI (file:runs/mlruns, http://host:5000); None = no MLflow (TensorBoard always runs)."""
    mlflow_experiment: str = "clasp-dist"
    """MLflow experiment the runs (and a sweep's trials) are logged under; created when missing."""


@section
class Config:
    data: DataConfig = _default(DataConfig)
    """Dataset and reading."""
    storage: StorageConfig = _default(StorageConfig)
    """Object storage access."""
    model: ModelConfig = _default(ModelConfig)
    """CLASP architecture and module switches."""
    loss: LossConfig = _default(LossConfig)
    """Loss weights."""
    optim: OptimConfig = _default(OptimConfig)
    """Optimizer and schedule."""
    deepspeed: DeepSpeedConfig = _default(DeepSpeedConfig)
    """DeepSpeed engine."""
    train: TrainConfig = _default(TrainConfig)
    """Training loop and scaling."""
    decode: DecodeConfig = _default(DecodeConfig)
    """Weak predictions to segments."""
    eval: EvalConfig = _default(EvalConfig)
    """Evaluation."""
    run: RunConfig = _default(RunConfig)
    """Run naming and storage."""
    tracking: TrackingConfig = _default(TrackingConfig)
    """Optional experiment tracking (MLflow)."""
