"""Fixtures of the data tests: a small generated dataset shared by the module's tests."""
from __future__ import annotations

import pytest

from clasp_dist.data import generate_dataset


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> str:
    """The `tiny` semi-synthetic profile (48/16/16 videos, 32-d visual, 16-d audio), local."""
    root = tmp_path_factory.mktemp("tiny") / "ds"
    return generate_dataset(str(root), "tiny", seed=0, workers=1, progress=False)
