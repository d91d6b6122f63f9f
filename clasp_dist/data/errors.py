"""Error classes of the data plane: every message names the root, shard, sample and field involved.

All derive from :class:`DataError`. They pickle with their attributes so that an error raised inside
a Ray read task reaches the driver intact (wrapped in Ray's task error, message preserved).
"""

from __future__ import annotations


class DataError(Exception):
    """Base class of every data-plane error."""


class ManifestError(DataError):
    """A missing, unreadable, newer-version or inconsistent ``manifest.json``."""


class StorageError(DataError):
    """The storage behind a root cannot be reached or refuses our credentials (never printed)."""


class ChecksumError(DataError):
    """A shard's sha256 differs from the manifest."""


class BadSampleError(DataError):
    """One sample (video) is unusable. ``shard``, ``video_id`` and ``field`` say where and what."""

    def __init__(self, reason: str, shard: str | None = None, video_id: str | None = None, field: str | None = None):
        self.reason, self.shard, self.video_id, self.field = reason, shard, video_id, field
        super().__init__(format_bad_sample(reason, shard, video_id, field))

    def __reduce__(self):
        return type(self), (self.reason, self.shard, self.video_id, self.field)


class BadShardError(BadSampleError):
    """A whole shard is unreadable (corrupt or truncated tar): the samples after the damage are lost."""


class TooManySkippedError(DataError):
    """With ``bad_sample_policy=skip``, more than ``max_skipped_fraction`` of a split was skipped."""


def format_bad_sample(reason: str, shard: str | None, video_id: str | None, field: str | None) -> str:
    sample = (
        repr(video_id) if not video_id or len(video_id) <= 120 else f"{video_id[:100]!r}... ({len(video_id)} chars)"
    )
    where = [
        f"shard {shard}" if shard else None,
        f"sample {sample}" if video_id else None,
        f"field {field!r}" if field else None,
    ]
    return "bad sample: " + ", ".join(w for w in where if w) + f": {reason}"


def short_repr(value: object) -> str:
    """repr() cut to 80 characters, for error messages about untrusted values."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
