"""Data plane: shard format, semi-synthetic generator, converters and readers (docs/data.md).

Importing this package does not import Ray; ``source`` and ``batch`` import it lazily.
"""

from .errors import (
    BadSampleError,
    BadShardError,
    ChecksumError,
    DataError,
    ManifestError,
    StorageError,
    TooManySkippedError,
)
from .format import VideoSample
from .grid import Grid
from .manifest import Manifest, ShardInfo, SplitInfo, read_manifest, verify_checksums
from .roots import ensure_dataset
from .sample_rows import SampleDecoder, SkipStats
from .synthetic import PROFILES, SynthProfile, generate_dataset
from .writer import write_dataset

__all__ = [
    "BadSampleError",
    "BadShardError",
    "ChecksumError",
    "DataError",
    "Grid",
    "Manifest",
    "ManifestError",
    "PROFILES",
    "SampleDecoder",
    "ShardInfo",
    "SkipStats",
    "SplitInfo",
    "StorageError",
    "SynthProfile",
    "TooManySkippedError",
    "VideoSample",
    "ensure_dataset",
    "generate_dataset",
    "read_manifest",
    "verify_checksums",
    "write_dataset",
]
