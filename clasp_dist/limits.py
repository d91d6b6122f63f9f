"""Bounds on everything read or allocated from input, each with its reason, and the checks that apply them.

Every command reads files that a user (or an attacker) controls: configs, ``manifest.json``, shards, annotation
and results JSON, a checkpoint's ``model.json``. Each is checked *before* it is read or anything is allocated
from it: the file's type (a regular file, never a FIFO or device, which would hang or never end), its size
against a bound, JSON nesting depth, YAML alias expansion, the model dimensions a checkpoint asks for. A value
quoted in an error message is cut to :data:`QUOTE_CHARS`. The bounds are far above any real dataset or model
(the figures are in docs/reliability.md) and far below what would exhaust a machine.

The checks raise :class:`InputLimitError` (a ``ValueError``), whose message names the file and the field; the
readers that call them re-raise it as their own error class where they have one.
"""

from __future__ import annotations

import json
import os
import reprlib
import stat
from typing import Any

MiB = 1 << 20

# ---------------------------------------------------------------------------------------- file sizes
MAX_CONFIG_BYTES = 1 * MiB
"""A YAML preset/config file: the largest packaged preset is under 4 KiB."""
MAX_MANIFEST_BYTES = 64 * MiB
"""``manifest.json``: about 200 bytes per shard, so room for 300,000 shards."""
MAX_MODEL_JSON_BYTES = 4 * MiB
"""A checkpoint's ``model.json``: a config plus the class list; a real one is under 16 KiB."""
MAX_RESULTS_BYTES = 1024 * MiB
"""An annotation or results JSON: ActivityNet 1.3's annotations are 13 MB, its results with 100 segments per
video ~150 MB; parsed JSON takes several times its size in memory."""
MAX_STATE_JSON_BYTES = 1 * MiB
"""A checkpoint's ``train_state.json``: five numbers."""
MAX_TAR_HEADER_BYTES = 64 * 1024
"""A tar header record that Python's tarfile reads whole (PAX extended header, GNU long name/link): a real one
holds a path and a few attributes, well under 1 KiB."""
MAX_WEIGHTS_BYTES = 8 * 1024 * MiB
"""A checkpoint's ``weights.pt``: the largest model the dimension bounds allow in float32 is ~ 2 GiB."""

# ---------------------------------------------------------------------------------------- structure
MAX_JSON_DEPTH = 64
"""Nesting of any JSON input: real files nest at most 5 deep; Python's parser recurses per level."""
MAX_SPLITS = 16
"""Splits in a manifest: the format knows train, validation, test."""
MAX_SHARDS = 200_000
"""Shards listed in one manifest (all splits): a 6 TB dataset of 32 MB shards."""
MAX_YAML_NODES = 100_000
"""Nodes of a YAML document with every alias expanded: a preset has ~150; a billion-laughs file has 10^9."""
MAX_TIOU_THRESHOLDS = 101
"""tIoU thresholds of an evaluation: the protocols use 9 or 10; 0:1:0.01 gives 101. Each costs a full matching pass."""
MAX_OVERRIDE_CHARS = 10_000
"""One ``key=value`` override on the command line: the longest real ones are lists of a few keys."""
QUOTE_CHARS = 80
"""A value quoted in an error message is cut to this many characters (one override once made a 254 MB line)."""
MAX_NAME_CHARS = 200
"""A run name, split name or video id: used as a file or folder name (most file systems allow 255 bytes)."""

# ---------------------------------------------------------------------------------------- model dimensions
MAX_D_MODEL = 8192
"""``model.d_model``: the published CLASP models use 256-512; 8192 is a 1.6 GB float32 encoder."""
MAX_HEADS = 256
"""``model.n_heads``."""
MAX_LAYERS = 64
"""``model.n_self_layers`` and any other block count."""
MAX_FFN_MULT = 16
"""``model.ffn_mult``: FFN width = ffn_mult * d_model."""
MAX_SEQ_LEN = 1 << 20
"""``model.max_len``: the position table is max_len x d_model floats (UnAV-100's longest video is ~1,000 steps)."""
MAX_CLASSES = 100_000
"""Classes of a dataset or model (ActivityNet 200, UnAV-100 100); a classifier head is classes x d_model."""
MAX_FEATURE_DIM = 65_536
"""``visual_dim``/``audio_dim`` of a dataset or model (I3D 2048, ONE-PEACE 1536)."""


class InputLimitError(ValueError):
    """An input over a bound, or of the wrong kind; the message names the file and the field."""


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """repr() of an untrusted value, cut to `limit` characters; never builds the whole repr of a huge value."""
    short = reprlib.Repr()
    short.maxstring = short.maxother = short.maxlong = limit
    short.maxlevel, short.maxlist, short.maxdict, short.maxtuple = 3, 8, 8, 8
    try:
        text = short.repr(value)
    except (RecursionError, ValueError):  # ValueError: int too large to convert to str
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def check_regular_file(path: str | os.PathLike, limit: int, what: str, root: str | None = None) -> int:
    """Refuse a local `path` that is not a regular file (FIFO, device, directory, missing), one over `limit`
    bytes, or (with `root`) a symlink that resolves outside `root`. Returns its size. Nothing is opened."""
    path = os.fspath(path)
    if path.startswith("file://"):
        path = path[len("file://") :]
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise InputLimitError(f"{path}: {what} cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device"
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)):
            kind = "not a regular file"
        raise InputLimitError(f"{path}: {what} is {kind}, not a regular file")
    if root is not None and not _inside(os.path.realpath(path), os.path.realpath(root)):
        raise InputLimitError(f"{path}: {what} is a link that leaves {root}")
    if st.st_size > limit:
        raise InputLimitError(f"{path}: {what} is {st.st_size} bytes, over the bound of {limit} bytes")
    return st.st_size


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def read_bounded_bytes(path: str | os.PathLike, limit: int, what: str, storage_cfg=None) -> bytes:
    """The bytes of a local file or an fsspec URL, refused (before reading) over `limit` or when not a regular
    file; at most its stated size + 1 bytes are read, so a file that grew meanwhile is refused too."""
    path = os.fspath(path)
    if _is_remote(path):
        from .data.filesystem import get_fs

        fs, inner = get_fs(path, storage_cfg)
        size = fs.info(inner).get("size") or 0
        if size > limit:
            raise InputLimitError(f"{path}: {what} is {size} bytes, over the bound of {limit} bytes")
        with fs.open(inner, "rb") as f:
            data = f.read(min(size, limit) + 1)
    else:
        size = check_regular_file(path, limit, what)
        with open(path, "rb") as f:
            data = f.read(size + 1)  # read(n) allocates n bytes up front: the stat size, not the bound
    if len(data) > limit or len(data) > size:
        raise InputLimitError(f"{path}: {what} changed while it was read (now over {size} bytes)")
    return data


def json_depth_ok(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when no bracket nests deeper than `limit` (a linear scan that skips strings), checked before parsing."""
    data = text.encode() if isinstance(text, str) else text
    depth, in_string, escaped = 0, False, False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return False
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return True


def parse_json(data: str | bytes, where: str) -> Any:
    """json.loads with the depth bound; strict UTF-8; errors as InputLimitError naming `where`."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputLimitError(f"{where}: not valid UTF-8 at byte {exc.start}") from None
    if not json_depth_ok(data):
        raise InputLimitError(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InputLimitError(f"{where}: not valid JSON ({quote(str(exc), 200)})") from None


def read_json_file(path: str | os.PathLike, limit: int, what: str, storage_cfg=None) -> Any:
    """A bounded, type-checked read (:func:`read_bounded_bytes`) parsed by :func:`parse_json`."""
    return parse_json(read_bounded_bytes(path, limit, what, storage_cfg), os.fspath(path))


def check_plain_name(value: str, what: str) -> str:
    """`value` must be one plain file name: no separators, not '.'/'..', no control characters, bounded length."""
    if not isinstance(value, str) or not value:
        raise InputLimitError(f"{what} must be a non-empty name, got {quote(value)}")
    if len(value) > MAX_NAME_CHARS:
        raise InputLimitError(f"{what} is {len(value)} characters, over the bound of {MAX_NAME_CHARS}")
    if value in (".", "..") or "/" in value or "\\" in value or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InputLimitError(
            f"{what} must be one plain name (no '/', '\\', '..' or control characters), got {quote(value)}"
        )
    return value


# ---------------------------------------------------------------------------------------- output paths
def check_output_file(path: str | os.PathLike, what: str) -> None:
    """Refuse, before any work, a local output file path that is a directory or lies under a non-directory."""
    path = os.fspath(path)
    if _is_remote(path):
        return
    if os.path.isdir(path):
        raise InputLimitError(f"{path}: {what} is a directory; give a file path")
    if os.path.lexists(path) and not os.path.isfile(path):
        raise InputLimitError(f"{path}: {what} exists and is not a regular file")
    _check_parents(os.path.dirname(os.path.abspath(path)), path, what)


def check_output_dir(path: str | os.PathLike, what: str) -> None:
    """Refuse, before any work, a local output folder path that is a file or lies under a non-directory."""
    path = os.fspath(path)
    if _is_remote(path):
        return
    if os.path.lexists(path) and not os.path.isdir(path):
        raise InputLimitError(f"{path}: {what} exists and is not a directory")
    _check_parents(os.path.abspath(path), path, what)


def _check_parents(directory: str, path: str, what: str) -> None:
    probe = directory
    while not os.path.lexists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return
        probe = parent
    if not os.path.isdir(probe):
        raise InputLimitError(f"{path}: {what} lies under {probe}, which is not a directory")
