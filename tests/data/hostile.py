"""Hostile dataset roots, built in the test (never shipped): what an attacker would put in a shard.

``HOSTILE`` maps a name to ``(build, field, reason)``: ``build(dir)`` writes a validation split of
two good videos and then the hostile sample ``bad`` (or a hostile shard) and returns the root;
``field`` and ``reason`` are what the one-line error must name. ``SHARD_LEVEL`` names the entries
that refuse the whole shard (a ``BadShardError``) rather than one sample.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from clasp_dist.data.format import npy_bytes
from tests.data.data_helpers import DA, DV, good_members, write_dataset_from_tars

STEPS = 6
BOMB_STEPS = 4_000_000
"""Steps of the bomb .npy: 4e6 x 8 float16 = 64 MB expanded, about 64 KB gzip-compressed."""


def meta(vid: str = "bad", **fields) -> bytes:
    return json.dumps({**json.loads(good_members(vid)["meta.json"]), **fields}).encode()


def raw_tar(entries: list[tuple[str, bytes, dict]], end: bool = True) -> bytes:
    """A tar of (name, data, TarInfo attributes) entries, in order; attributes may set type, size, linkname.

    ``end=False``: without the end-of-archive blocks, for appending hand-made members."""
    buf = io.BytesIO()
    tar = tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT)
    for name, data, attrs in entries:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        for key, value in attrs.items():
            setattr(info, key, value)
        tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    if not end:
        return buf.getvalue()[: tar.offset]
    tar.close()
    return buf.getvalue()


def _good_entries(n: int = 2) -> list[tuple[str, bytes, dict]]:
    return [(f"good{i}.{s}", d, {}) for i in range(n) for s, d in good_members(f"good{i}", seed=i).items()]


def _bad_entries(vid: str = "bad", **replace) -> list[tuple[str, bytes, dict]]:
    members = {**good_members(vid), **replace}
    return [(f"{vid}.{s}", d, {}) for s, d in members.items() if d is not None]


def _root(tmp: Path, data: bytes, videos: int = 3) -> Path:
    return write_dataset_from_tars(tmp / "ds", {"validation": [(data, videos)]})


def sample_root(vid: str = "bad", **replace) -> Callable[[Path], Path]:
    return lambda tmp: _root(tmp, raw_tar(_good_entries() + _bad_entries(vid, **replace)))


def entries_root(extra: Callable[[], list], videos: int = 3) -> Callable[[Path], Path]:
    return lambda tmp: _root(tmp, raw_tar(_good_entries() + extra()), videos)


def bomb_npy(steps: int = BOMB_STEPS, dim: int = DV) -> bytes:
    """A valid float16 .npy of ``steps`` x ``dim`` zeros (the payload of the memory bombs)."""
    return npy_bytes(np.zeros((steps, dim), np.float16))


def gzip_bomb(tmp: Path) -> Path:
    """A gzip-compressed shard (about 64 KB) whose sample expands to a 64 MB .npy."""
    data = raw_tar(_good_entries() + _bad_entries(**{"visual.npy": bomb_npy()}))
    return _root(tmp, gzip.compress(data, 9))


def gnu_sparse_member(name: str, chunk: bytes, realsize: int) -> bytes:
    """One GNU sparse member: ``chunk`` stored at offset 0, the rest (up to ``realsize``) holes of zeros."""
    info = tarfile.TarInfo(name)
    info.size, info.type = len(chunk), tarfile.GNUTYPE_SPARSE
    header = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    header[386:398] = tarfile.itn(0, 12, tarfile.GNU_FORMAT)  # sparse map entry 0: offset
    header[398:410] = tarfile.itn(len(chunk), 12, tarfile.GNU_FORMAT)  # ... and stored bytes
    header[482] = 0  # no extended sparse headers
    header[483:495] = tarfile.itn(realsize, 12, tarfile.GNU_FORMAT)  # the size it expands to
    header[148:156] = b"        "
    header[148:156] = b"%06o\0 " % sum(header[:512])
    padded = chunk + b"\0" * (-len(chunk) % tarfile.BLOCKSIZE)
    return bytes(header[:512]) + padded


def sparse_bomb(tmp: Path) -> Path:
    """A ~1 KB sparse member whose .npy header announces BOMB_STEPS steps: 64 MB once expanded."""
    npy = bomb_npy()
    header_len = npy.index(b"\n") + 1  # the .npy header; the zeros after it are holes
    body = raw_tar(_good_entries() + _bad_entries(**{"visual.npy": None}), end=False)
    return _root(tmp, body + gnu_sparse_member("bad.visual.npy", npy[:header_len], len(npy)) + raw_tar([]))


def huge_claimed_member(tmp: Path) -> Path:
    """A member whose (pax) header claims a terabyte but holds a few bytes."""
    info = tarfile.TarInfo("bad.visual.npy")
    info.size = 10**12
    head = info.tobuf(format=tarfile.PAX_FORMAT)
    return _root(tmp, raw_tar(_good_entries(), end=False) + head + b"\x93NUMPY" + b"\0" * 506)


def _dup_video() -> list:
    return _bad_entries() + [(f"other.{s}", d, {}) for s, d in good_members("other").items()] + _bad_entries()


def _dup_member() -> list:
    entries = _bad_entries()
    return entries[:1] + entries  # visual.npy twice in one sample


def _float64(value: float) -> bytes:
    return npy_bytes(np.full((STEPS, DV), value, np.float64))


HOSTILE: dict[str, tuple[Callable[[Path], Path], str, str]] = {
    # 1. path traversal: keys/ids that leave a folder
    "key_parent_traversal": (sample_root("../../escaped"), "key", "unsafe video id"),
    "key_absolute_path": (sample_root("/tmp/clasp-escaped"), "key", "unsafe video id"),
    "key_dot_dot": (
        entries_root(lambda: [(f"...{s}", d, {}) for s, d in good_members("..").items()]),
        "key",
        "unsafe video id",
    ),
    "key_ten_thousand_characters": (sample_root("k" * 10_000), "key", "longer than 200 characters"),
    "meta_video_id_traversal": (
        sample_root(**{"meta.json": meta(video_id="../../escaped")}),
        "meta.json:video_id",
        "but the tar key is",
    ),
    # 2. memory bombs
    "gzip_compressed_shard": (gzip_bomb, "", "gzip-compressed shard refused"),
    "sparse_member": (sparse_bomb, "visual.npy", "sparse tar member"),
    "member_claims_a_terabyte": (huge_claimed_member, "visual.npy", "over the bound"),
    "npy_steps_far_from_duration": (
        sample_root(**{"visual.npy": bomb_npy(4000), "audio.npy": bomb_npy(4000, DA)}),
        "visual.npy",
        "but the duration gives",
    ),
    "npy_header_claims_more_than_it_holds": (
        sample_root(**{"visual.npy": bomb_npy(STEPS)[:-16], "meta.json": meta()}),
        "visual.npy",
        "unreadable .npy",
    ),
    "symlink_member": (
        entries_root(
            lambda: (
                _bad_entries(**{"visual.npy": None})
                + [("bad.visual.npy", b"", {"type": tarfile.SYMTYPE, "linkname": "/dev/zero"})]
            )
        ),
        "visual.npy",
        "symbolic link",
    ),
    "directory_member": (
        entries_root(
            lambda: [("bad.visual.npy", b"", {"type": tarfile.DIRTYPE})] + _bad_entries(**{"visual.npy": None})
        ),
        "visual.npy",
        "directory",
    ),
    # 3. exceptions that escaped the policy
    "meta_deeply_nested": (
        sample_root(**{"meta.json": b"[" * 200_000 + b"]" * 200_000}),
        "meta.json",
        "not valid JSON",
    ),
    "meta_infinity_in_integer_field": (
        sample_root(**{"meta.json": meta(feat_stride=float("inf"))}),
        "meta.json:feat_stride",
        "must be an integer",
    ),
    "meta_huge_integer_label": (
        sample_root(**{"meta.json": meta(labels=[10**30])}),
        "meta.json:labels",
        "out of range",
    ),
    # 4. values that passed unchecked
    "float64_overflows_float16": (sample_root(**{"visual.npy": _float64(1e10)}), "visual.npy", "after the cast"),
    "duration_nan": (sample_root(**{"meta.json": meta(duration=float("nan"))}), "meta.json:duration", "finite number"),
    "duration_negative": (sample_root(**{"meta.json": meta(duration=-3.0)}), "meta.json:duration", "finite number > 0"),
    "fps_zero": (sample_root(**{"meta.json": meta(fps=0)}), "meta.json:fps", "finite number > 0"),
    "fps_infinite": (sample_root(**{"meta.json": meta(fps=float("inf"))}), "meta.json:fps", "finite number > 0"),
    "grid_differs_from_manifest": (sample_root(**{"meta.json": meta(fps=30.0)}), "meta.json:fps", "manifest's grid"),
    "labels_as_strings": (sample_root(**{"meta.json": meta(labels=["1"])}), "meta.json:labels", "integer class ids"),
    "labels_as_floats": (sample_root(**{"meta.json": meta(labels=[1.0])}), "meta.json:labels", "integer class ids"),
    "labels_as_booleans": (sample_root(**{"meta.json": meta(labels=[True])}), "meta.json:labels", "integer class ids"),
    "segment_with_string_time": (
        sample_root(**{"meta.json": meta(segments=[["a", 1.0, 1]])}),
        "meta.json:segments",
        "is not [start, end, class id]",
    ),
    "segment_end_before_start": (
        sample_root(**{"meta.json": meta(segments=[[1.5, 0.5, 1]])}),
        "meta.json:segments",
        "0 <= start <= end",
    ),
    # 5. duplicates: one rule, both readers
    "member_twice_in_sample": (entries_root(_dup_member), "visual.npy", "appears twice in this sample"),
    "video_twice_in_shard": (entries_root(_dup_video, videos=5), "key", "appears twice in this shard"),
}
SHARD_LEVEL = {"gzip_compressed_shard", "member_claims_a_terabyte"}
