"""S3 failures are clear and fast: an unreachable endpoint and refused credentials, against real servers."""

from __future__ import annotations

import time

import pytest

from clasp_dist.config import StorageConfig
from clasp_dist.data import StorageError, generate_dataset, read_manifest
from tests.helpers import free_port


def test_unreachable_endpoint_fails_fast_with_clear_error(s3_server):
    endpoint = f"http://127.0.0.1:{free_port()}"
    start = time.perf_counter()
    with pytest.raises(StorageError, match=rf"unreachable.*'s3://bucket/ds'.*{endpoint}"):
        read_manifest("s3://bucket/ds", StorageConfig(endpoint_url=endpoint, retries=2))
    assert time.perf_counter() - start < 15


def test_unreachable_endpoint_on_write(s3_server):
    endpoint = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StorageError, match="unreachable"):
        generate_dataset(
            "s3://bucket/ds",
            "tiny",
            limit_per_split=1,
            workers=1,
            progress=False,
            storage_cfg=StorageConfig(endpoint_url=endpoint, retries=1),
        )


def test_wrong_credentials_fail_fast_and_are_not_printed(strict_s3, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGKEY0000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    start = time.perf_counter()
    with pytest.raises(StorageError, match=r"access refused.*credentials") as info:
        read_manifest("s3://bucket/ds", StorageConfig(endpoint_url=strict_s3, retries=2))
    assert time.perf_counter() - start < 15
    assert "very-secret-value" not in str(info.value) and "very-secret-value" not in repr(info.value.__cause__)
