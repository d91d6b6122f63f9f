"""S3 failures are clear and fast: an unreachable endpoint and refused credentials, against real servers."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from clasp_dist.config import StorageConfig
from clasp_dist.data import StorageError, generate_dataset, read_manifest


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # released on exit: nothing listens there


def test_unreachable_endpoint_fails_fast_with_clear_error(s3_server):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    start = time.perf_counter()
    with pytest.raises(StorageError, match=rf"unreachable.*'s3://bucket/ds'.*{endpoint}"):
        read_manifest("s3://bucket/ds", StorageConfig(endpoint_url=endpoint, retries=2))
    assert time.perf_counter() - start < 15


def test_unreachable_endpoint_on_write(s3_server):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(StorageError, match="unreachable"):
        generate_dataset("s3://bucket/ds", "tiny", limit_per_split=1, workers=1, progress=False,
                         storage_cfg=StorageConfig(endpoint_url=endpoint, retries=1))


@pytest.fixture(scope="module")
def strict_s3():
    """A second moto server in its own process with IAM authentication on from the first request
    (``INITIAL_NO_AUTH_ACTION_COUNT=0``): unknown access keys get 403 InvalidAccessKeyId, as on AWS."""
    port = _closed_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def test_wrong_credentials_fail_fast_and_are_not_printed(strict_s3, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGKEY0000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    start = time.perf_counter()
    with pytest.raises(StorageError, match=r"access refused.*credentials") as info:
        read_manifest("s3://bucket/ds", StorageConfig(endpoint_url=strict_s3, retries=2))
    assert time.perf_counter() - start < 15
    assert "very-secret-value" not in str(info.value) and "very-secret-value" not in repr(info.value.__cause__)
