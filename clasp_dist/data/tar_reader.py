"""Bounded reading of shard tars into raw samples: the one tar reader of both readers (docs/data.md#format).

:func:`iter_tar_samples` groups a tar stream's members into WebDataset-style raw samples
(``__key__``, ``__url__``, one bytes value per member suffix). It is used by the Ray-free reader, by
``inspect_data`` and, through :mod:`clasp_dist.data.split_reader`'s datasource, by the Ray Data reader.
It bounds memory before reading anything:

* a shard must be an uncompressed tar: a gzip/bzip2/xz/zstd/lz4 stream is refused (the tar is
  opened with mode ``r|``, never ``r|*``), so a small shard cannot expand into gigabytes;
* a member must be a regular file (no links, directories, devices, sparse members); its size is
  read from the tar header and checked against a bound (``data.max_member_mb`` for ``.npy``,
  :data:`META_MAX_BYTES` for ``meta.json``) before its data is read; members other than
  ``visual.npy``/``audio.npy``/``meta.json`` (a WebDataset sample's ``.cls``, ``.txt``, ``.json``...) are
  bounded like the others but never read: they are skipped and counted in the sample's ``__extra__``
  (with ``strict_members`` they make the sample bad, ``data.strict_members``);
* a member repeated inside one sample, or a key seen earlier in the shard (the same video twice),
  makes that sample bad; reading stops with :class:`BadShardError` past the manifest's count.

Problems that belong to one sample are recorded in the raw sample (``__problem__`` = (field, reason),
the first one wins) and raised by the decoder as a ``BadSampleError``, so that the policy
``skip`` skips that sample only and reading goes on. Problems of the archive itself (not a tar,
truncated, compressed, a member that is not ``<key>.<suffix>``) raise :class:`BadShardError`.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterator

from ..limits import MAX_TAR_HEADER_BYTES
from .errors import BadShardError
from .format import MEMBERS

META_MAX_BYTES = 1 << 20
"""Bound on a ``meta.json`` member (1 MiB: thousands of segments; a real one is well under 4 KiB)."""

_COMPRESSED = [
    (re.compile(rb"^\x1f\x8b"), "gzip"),
    (re.compile(rb"^BZh[1-9](\x31\x41\x59\x26\x53\x59|\x17\x72\x45\x38\x50\x90)"), "bzip2"),
    (re.compile(rb"^\xfd7zXZ\x00"), "xz"),
    (re.compile(rb"^\x28\xb5\x2f\xfd"), "zstd"),
    (re.compile(rb"^\x04\x22\x4d\x18"), "lz4"),
]
_SNIFF_BYTES = 10
_TYPE_NAMES = {
    tarfile.SYMTYPE: "symbolic link",
    tarfile.LNKTYPE: "hard link",
    tarfile.DIRTYPE: "directory",
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
    tarfile.FIFOTYPE: "FIFO",
    tarfile.CONTTYPE: "contiguous file",
}


def split_member_name(name: str) -> tuple[str | None, str | None]:
    """WebDataset's rule: the key is the name up to the first dot (in the base name)."""
    head, sep, base = name.rpartition("/")
    if "." not in base:
        return None, None
    key, suffix = base.split(".", 1)
    return head + sep + key, suffix


_WHOLE_READ_HEADERS = {
    tarfile.XHDTYPE: "PAX extended header",
    tarfile.XGLTYPE: "PAX global header",
    tarfile.SOLARIS_XHDTYPE: "Solaris extended header",
    tarfile.GNUTYPE_LONGNAME: "GNU long name",
    tarfile.GNUTYPE_LONGLINK: "GNU long link name",
}


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads a PAX extended header or a GNU long name whole into memory before any member check:
    its size is checked first (tarfile's `_proc_member` hook, the one place where that record is read)."""

    def _proc_member(self, tarfile_obj):
        kind = _WHOLE_READ_HEADERS.get(self.type)
        if kind is not None and self.size > MAX_TAR_HEADER_BYTES:
            raise BadShardError(
                f"tar {kind} record of {self.size} bytes, over the bound of {MAX_TAR_HEADER_BYTES} bytes; "
                "not read, the rest of the shard is refused"
            )
        return super()._proc_member(tarfile_obj)


class _Sniffed:
    """A read-only stream whose first bytes were looked at (to refuse compressed shards) and are replayed."""

    def __init__(self, fileobj, shard: str):
        self.fileobj, self.head = fileobj, b""
        while len(self.head) < _SNIFF_BYTES:
            chunk = fileobj.read(_SNIFF_BYTES - len(self.head))
            if not chunk:
                break
            self.head += chunk
        for magic, kind in _COMPRESSED:
            if magic.match(self.head):
                raise BadShardError(
                    f"{kind}-compressed shard refused: shards are uncompressed tar files (docs/data.md#format)",
                    shard=shard,
                )

    def read(self, size: int = -1) -> bytes:
        if not self.head:
            return self.fileobj.read(size)
        if size is None or size < 0:
            out, self.head = self.head + self.fileobj.read(), b""
            return out
        out, self.head = self.head[:size], self.head[size:]
        if len(out) < size:
            out += self.fileobj.read(size - len(out))
        return out


def iter_tar_samples(
    fileobj,
    shard: str,
    expected: int | None = None,
    max_member_bytes: int = 64 << 20,
    strict_members: bool = False,
) -> Iterator[dict]:
    """Group a tar stream's members into raw samples like WebDataset, with the bounds above.

    Raises :class:`BadShardError` naming the shard on a compressed, corrupt or truncated archive.
    A tar cut at a block boundary reads as a shorter archive, so with ``expected`` (the manifest's
    count) the last sample is held back until the count proves the shard complete, and reading
    stops once the shard holds more samples than that.
    """
    pending, yielded = None, 0
    try:
        for sample in _group_members(fileobj, shard, max_member_bytes, strict_members):
            if pending is not None:
                yield pending
                yielded += 1
                pending = None
            if expected is not None and yielded + 1 > expected:
                raise BadShardError(
                    f"holds more samples than the {expected} the manifest lists",
                    shard=shard,
                    video_id=sample["__key__"],
                )
            pending = sample
    except BadShardError:
        if pending is not None:  # complete: the damage is in a later sample
            yield pending
        raise
    if pending is not None and expected is not None and yielded + 1 < expected:
        raise BadShardError(
            f"truncated tar: {yielded + 1} samples where the manifest lists {expected}",
            shard=shard,
            video_id=pending["__key__"],
        )
    if pending is not None:
        yield pending


def _group_members(fileobj, shard: str, max_member_bytes: int, strict_members: bool) -> Iterator[dict]:
    current: dict | None = None
    seen: set[str] = set()
    try:
        with tarfile.open(fileobj=_Sniffed(fileobj, shard), mode="r|", tarinfo=_BoundedTarInfo) as stream:
            while (info := stream.next()) is not None:
                stream.members.clear()  # tarfile keeps every header it has read; a stream needs none of them
                key, suffix = split_member_name(info.name)
                if key is None:
                    raise BadShardError(f"member {info.name[:200]!r} is not named '<video id>.<member>'", shard=shard)
                if current is not None and key != current["__key__"]:
                    seen.add(current["__key__"])
                    yield current
                    current = None
                if current is None:
                    current = {"__key__": key, "__url__": shard}
                    if key in seen:
                        _flag(current, "key", "the same video appears twice in this shard")
                _check_stored_size(stream.offset - info.offset_data, info, suffix, shard, key, max_member_bytes)
                problem = _member_problem(info, suffix, current, strict_members)
                if problem == _EXTRA:
                    current["__extra__"] = current.get("__extra__", 0) + 1  # skipped unread, counted
                    continue
                if problem is not None:
                    _flag(current, suffix, problem)  # its data is skipped, never read
                    continue
                current[suffix] = stream.extractfile(info).read()
    except BadShardError as exc:
        if exc.shard is None:  # raised inside tarfile, where the shard is not known
            raise BadShardError(exc.reason, shard=shard, video_id=(current or {}).get("__key__")) from None
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise BadShardError(
            f"corrupt or truncated tar ({type(exc).__name__}: {exc})",
            shard=shard,
            video_id=(current or {}).get("__key__"),
        ) from None
    if current is not None:
        yield current


def _bound(suffix: str, max_member_bytes: int) -> int:
    return META_MAX_BYTES if suffix == "meta.json" else max_member_bytes


def _check_stored_size(
    stored: int, info: tarfile.TarInfo, suffix: str, shard: str, key: str, max_member_bytes: int
) -> None:
    """A member whose header claims more bytes than the bound is neither read nor skipped over (a
    claimed size can be absurd): the shard is refused from here on."""
    limit = _bound(suffix, max_member_bytes)
    claimed = max(stored - (tarfile.BLOCKSIZE - 1), 0 if info.issparse() else info.size)  # stored is block-rounded
    if claimed > limit:
        raise BadShardError(
            f"tar member {info.name[:200]!r} claims {claimed} bytes, over the bound of "
            f"{limit} bytes ({'fixed' if suffix == 'meta.json' else 'data.max_member_mb'}); "
            "not read, the rest of the shard is refused",
            shard=shard,
            video_id=key,
            field=suffix,
        )


def _flag(sample: dict, field: str, reason: str) -> None:
    sample.setdefault("__problem__", (field, reason))


_EXTRA = "extra member"


def _member_problem(info: tarfile.TarInfo, suffix: str, sample: dict, strict_members: bool) -> str | None:
    """Why this member's data must not be read (None = read it; ``_EXTRA`` = another member, skipped)."""
    if info.issparse() or info.type == tarfile.GNUTYPE_SPARSE:
        return f"sparse tar member (it would expand to {info.size} bytes); shards hold regular files only (docs/data.md#format)"
    if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        kind = _TYPE_NAMES.get(info.type, f"type {info.type!r}")
        return f"tar member is a {kind}, not a regular file (docs/data.md#format)"
    if suffix not in MEMBERS and not strict_members:
        return _EXTRA
    if suffix not in MEMBERS:
        return (
            "unexpected member (data.strict_members=true: only visual.npy, audio.npy, meta.json are allowed; "
            "never read or unpickled)"
        )
    if suffix in sample:
        return "member appears twice in this sample"
    return None
