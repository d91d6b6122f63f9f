"""Training state on disk: DeepSpeed shards + our own small, pickle-free files.

A checkpoint directory (one per report, merged across ranks by Ray Train) holds:
  deepspeed/            engine.save_checkpoint(tag="state"): module, optimizer, scheduler (per rank)
  train_state.json      epoch, global step, best validation score, format version
  ema.pt                EMA shadow weights (tensors only; loaded with weights_only=True)
  rng_rank{R}.pt        each rank's torch (CPU, and CUDA on a GPU) / numpy / python RNG states
  weights.pt            consolidated fp32 inference weights, only when they are not the EMA (optim.ema_decay=0
                        or eval.use_ema=false): with the EMA, ema.pt holds them and a second copy is not written
  model.json            resolved config + dataset description: everything needed to rebuild the model

`save_checkpoint` writes it (each rank its part) and `restore_checkpoint` reads it back: the layout lives
only here. `export_inference` writes weights.pt (built from ema.pt when the checkpoint has none) +
model.json into a stand-alone directory for `clasp predict` and `clasp evaluate --checkpoint`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import Config, ConfigError, apply_overrides, from_dict, to_dict
from ..data.filesystem import atomic_write, get_fs
from ..data.manifest import DatasetInfo
from ..limits import (
    MAX_CLASSES,
    MAX_FEATURE_DIM,
    MAX_MODEL_JSON_BYTES,
    MAX_NAME_CHARS,
    MAX_STATE_JSON_BYTES,
    MAX_WEIGHTS_BYTES,
    InputLimitError,
    check_regular_file,
    parse_json,
    quote,
    read_bounded_bytes,
)
from ..model import build_model

FORMAT_VERSION = 1
DS_SUBDIR, DS_TAG = "deepspeed", "state"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class TrainState:
    epoch: int
    """Last completed epoch (0-based)."""
    global_step: int
    best_val: float
    best_epoch: int


def _atomic_local_write(path: Path):
    """`atomic_write` for a local path: readers never see a partial file."""
    fs, local = get_fs(str(path))
    return atomic_write(fs, local)


def write_json_atomic(path: Path, payload: dict) -> None:
    with _atomic_local_write(path) as f:
        f.write(json.dumps(payload, indent=1, sort_keys=True).encode())


def save_model_description(directory: Path, cfg: Config, info: DatasetInfo) -> None:
    write_json_atomic(
        directory / "model.json", {"format_version": FORMAT_VERSION, "config": to_dict(cfg), "dataset": asdict(info)}
    )


def load_model_description(directory: Path) -> tuple[Config, DatasetInfo]:
    path = Path(directory) / "model.json"
    try:
        text = read_bounded_bytes(path, MAX_MODEL_JSON_BYTES, "model.json")
    except (FileNotFoundError, NotADirectoryError):
        raise CheckpointError(f"{path}: missing; is {directory} a clasp-dist checkpoint or export directory?") from None
    except InputLimitError as err:
        raise CheckpointError(str(err)) from None
    return parse_model_description(text, str(path))


def parse_model_description(text: str | bytes, path: str) -> tuple[Config, DatasetInfo]:
    """model.json's content -> (config, dataset); errors name `path` and the field."""
    try:
        payload = parse_json(text, path)
    except InputLimitError as err:
        raise CheckpointError(str(err)) from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {quote(version)}; this clasp-dist reads {FORMAT_VERSION}")
    try:
        if not isinstance(payload["config"], dict) or not isinstance(payload["dataset"], dict):
            raise TypeError("'config' and 'dataset' must be objects")
        return from_dict(payload["config"]), checked_dataset_info(DatasetInfo(**payload["dataset"]), path)
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: field {err} missing or malformed") from None
    except ConfigError as err:  # e.g. a config key this clasp-dist does not know
        raise CheckpointError(f"{path}: field 'config' is not a valid configuration: {err}") from None


def checked_dataset_info(info: DatasetInfo, path: str) -> DatasetInfo:
    """The dataset fields that size the model (classes, feature dims) and the grid, type- and range-checked
    before any module is built from them."""
    bounds = {"visual_dim": MAX_FEATURE_DIM, "audio_dim": MAX_FEATURE_DIM, "feat_stride": 1 << 20, "window": 1 << 20}
    for name, bound in bounds.items():
        value = getattr(info, name)
        if type(value) is not int or not 1 <= value <= bound:
            raise CheckpointError(
                f"{path}: field 'dataset.{name}' must be an integer in [1, {bound}], got {quote(value)}"
            )
    if type(info.fps) not in (int, float) or not (0 < info.fps < 1e6):
        raise CheckpointError(f"{path}: field 'dataset.fps' must be a number in (0, 1e6), got {quote(info.fps)}")
    if not isinstance(info.classes, list) or not 1 <= len(info.classes) <= MAX_CLASSES:
        raise CheckpointError(f"{path}: field 'dataset.classes' must list 1 to {MAX_CLASSES} class names")
    if not all(isinstance(c, str) and len(c) <= MAX_NAME_CHARS for c in info.classes):
        raise CheckpointError(f"{path}: field 'dataset.classes' must hold names of at most {MAX_NAME_CHARS} characters")
    if not isinstance(info.dataset, str) or len(info.dataset) > MAX_NAME_CHARS:
        raise CheckpointError(f"{path}: field 'dataset.dataset' must be a name, got {quote(info.dataset)}")
    return info


def save_train_state(directory: Path, state: TrainState) -> None:
    write_json_atomic(directory / "train_state.json", {"format_version": FORMAT_VERSION, **asdict(state)})


def load_train_state(directory: Path) -> TrainState:
    path = Path(directory) / "train_state.json"
    try:
        payload = parse_json(read_bounded_bytes(path, MAX_STATE_JSON_BYTES, "train_state.json"), str(path))
        version = payload.pop("format_version", None)
        if version != FORMAT_VERSION:
            raise CheckpointError(f"{path}: format_version {version!r}; this clasp-dist reads {FORMAT_VERSION}")
        return TrainState(**payload)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except (ValueError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{path}: unreadable or malformed ({type(err).__name__}: {err})") from None


def save_tensors(path: Path, payload) -> None:
    with _atomic_local_write(path) as f:
        torch.save(payload, f)


def load_tensors(path: Path):
    """torch.load with weights_only=True: never unpickles arbitrary objects; a regular file under the bound."""
    try:
        check_regular_file(path, MAX_WEIGHTS_BYTES, path.name if isinstance(path, Path) else "weights")
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except InputLimitError as err:
        raise CheckpointError(str(err)) from None
    except Exception as err:  # truncated zip, wrong magic, non-tensor payload
        raise CheckpointError(f"{path}: unreadable or corrupted ({type(err).__name__}: {err})") from None


def rng_state(device: torch.device | str = "cpu") -> dict:
    """This rank's RNG states: torch CPU, python, numpy, and the CUDA generator of `device` when it is a GPU
    (dropout on a GPU draws from it)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": torch.tensor(py_state, dtype=torch.int64),
        "python_version": py_version,
        "numpy": torch.from_numpy(np_keys.astype(np.int64)),
        "numpy_pos": int(np_pos),
        "numpy_has_gauss": int(np_has_gauss),
        "numpy_gauss": float(np_gauss),
    }
    if torch.device(device).type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(torch.device(device))
    return state


def restore_rng(state: dict, device: torch.device | str = "cpu") -> None:
    """Restore `rng_state`'s states; the CUDA one onto `device` when both the state and a GPU are there.

    A GPU checkpoint resumed on CPU (or the reverse) restores the CPU generators only: dropout on the
    new device starts from the run's seed stream, not from where it stopped."""
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(int(x) for x in state["python"].tolist()), None))
    np.random.set_state(
        (
            "MT19937",
            state["numpy"].numpy().astype(np.uint32),
            state["numpy_pos"],
            state["numpy_has_gauss"],
            state["numpy_gauss"],
        )
    )
    if "cuda" in state and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], torch.device(device))


def save_checkpoint(
    directory: Path,
    engine,
    rank: int,
    device,
    state: TrainState,
    cfg: Config,
    info: DatasetInfo,
    weights: dict | None,
    ema_state: dict | None = None,
) -> None:
    """This rank's part of one checkpoint directory (the layout above): every rank writes its DeepSpeed
    shards and RNG states; rank 0 also the EMA (`ema_state`: `EMA.state_dict()`, gathered on every rank
    beforehand), the inference weights unless they are the EMA, model.json and train_state.json."""
    directory = Path(directory)
    engine.save_checkpoint(str(directory / DS_SUBDIR), tag=DS_TAG, save_latest=False)
    save_tensors(directory / f"rng_rank{rank}.pt", rng_state(device))
    if rank == 0:
        if ema_state is not None:
            save_tensors(directory / "ema.pt", ema_state)
        if ema_state is None or not cfg.eval.use_ema:
            save_tensors(directory / "weights.pt", weights)
        save_model_description(directory, cfg, info)
        save_train_state(directory, state)


def restore_checkpoint(directory: Path, engine, rank: int, ema=None) -> tuple[TrainState, dict]:
    """Load what `save_checkpoint` wrote into `engine` (and `ema`); returns the train state and this
    rank's RNG states (for `restore_rng`, once the caller has seeded everything else)."""
    directory = Path(directory)
    engine.load_checkpoint(str(directory / DS_SUBDIR), tag=DS_TAG)
    if ema is not None:
        ema.load_state_dict(load_tensors(directory / "ema.pt"))
    return load_train_state(directory), load_tensors(directory / f"rng_rank{rank}.pt")


def check_weights_match(weights: dict, model: torch.nn.Module, source: str) -> None:
    """Refuse weights from a different model config, naming the first differing key/shape."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in weights.items()}
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{source}: weights do not match the model config (missing {missing[:3]}, "
            f"unexpected {extra[:3]}); was it trained with different model.* settings?"
        )
    for key, shape in expected.items():
        if got[key] != shape:
            raise CheckpointError(f"{source}: weight {key!r} has shape {got[key]}, the model config expects {shape}")


def load_inference_model(
    directory: str | Path, device: str = "cpu", overrides: Iterable[str] = ()
) -> tuple[torch.nn.Module, Config, DatasetInfo]:
    """Rebuild the model from a checkpoint or export directory (model.json + weights.pt), eval mode.

    `overrides` (`key=value`) apply to the stored config *before* the model is built, so inference-time
    `model.*` keys (window, global_ratio, local_tau, ...) change the model that runs; one that changes a
    weight's shape (model.d_model) is refused by `check_weights_match`, naming the weight."""
    directory = resolve_export(Path(directory))
    cfg, info = load_model_description(directory)
    if overrides:
        cfg = from_dict(apply_overrides(to_dict(cfg), list(overrides)))
    weights = checked_weights(directory, cfg, info)
    model = build_model(cfg, info)
    model.load_state_dict(weights)
    return model.to(device).eval(), cfg, info


def stored_inference_weights(directory: Path, model: torch.nn.Module) -> dict:
    """A checkpoint's or export's inference weights: weights.pt, else (a checkpoint trained with the EMA)
    the averaged floats of ema.pt with `model`'s non-float entries."""
    directory = Path(directory)
    if (directory / "weights.pt").exists() or not (directory / "ema.pt").exists():
        return load_tensors(directory / "weights.pt")
    shadow = load_tensors(directory / "ema.pt").get("shadow")
    if not isinstance(shadow, dict):
        raise CheckpointError(f"{directory / 'ema.pt'}: no 'shadow' weights in it")
    full = {k: v for k, v in model.state_dict().items() if not v.dtype.is_floating_point}
    return {**full, **shadow}


def checked_weights(directory: Path, cfg: Config, info: DatasetInfo) -> dict:
    """The inference weights (weights.pt, else ema.pt's average), checked against the model that model.json
    describes, built on the meta device (shapes only, nothing allocated) so that a hostile model.json never
    allocates before its weights agree."""
    with torch.device("meta"):
        shapes = build_model(cfg, info)
    weights = stored_inference_weights(directory, shapes)
    check_weights_match(weights, shapes, str(directory / "weights.pt"))
    return weights


def check_checkpoint(directory: str | Path) -> None:
    """model.json and the weights of a local checkpoint or export, checked without building the model."""
    directory = resolve_export(Path(directory))
    checked_weights(directory, *load_model_description(directory))


def _previous_export(out: Path) -> Path:
    return out.with_name(out.name + ".old")


def resolve_export(directory: Path) -> Path:
    """`directory`, or its complete previous version `<dir>.old` when an export was killed between
    its two renames (the only moment `<dir>` itself is missing)."""
    old = _previous_export(directory)
    if not (directory / "model.json").exists() and (old / "model.json").exists():
        return old
    return directory


def export_inference(checkpoint_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the inference weights (weights.pt: the checkpoint's own, or built from its ema.pt) and the
    description into `out_dir`, replacing it as a whole.

    The copy goes to `<out>.tmp`; then `<out>` is renamed to `<out>.old`, `<out>.tmp` to `<out>`, and
    `<out>.old` removed. A process killed at any point leaves either the previous export or the new
    one complete at `<out>` (or, between the two renames, the previous one at `<out>.old`, which
    `load_inference_model` and the next export pick up); never a half-written one."""
    src, out = Path(checkpoint_dir), Path(out_dir)
    tmp, old = out.with_name(out.name + ".tmp"), _previous_export(out)
    if not out.exists() and old.exists():
        os.replace(old, out)  # a previous export was killed between its renames: restore it first
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy2(src / "model.json", tmp / "model.json")
    if (src / "weights.pt").exists():
        shutil.copy2(src / "weights.pt", tmp / "weights.pt")
    else:
        cfg, info = load_model_description(src)
        model = build_model(cfg, info)
        weights = stored_inference_weights(src, model)
        check_weights_match(weights, model, str(src / "ema.pt"))
        save_tensors(tmp / "weights.pt", weights)
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    return out
