"""Storage faults on real servers: the S3 endpoint goes away mid-epoch, and a run.storage_path that
cannot be written (missing bucket, refused credentials, read-only or full file system)."""

from __future__ import annotations

import errno
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import epoch_metrics, run_cfg

from .conftest import DurableS3, registered_checkpoints, wait_for

pytestmark = pytest.mark.slow


class Outage(threading.Thread):
    """Kills the S3 server as soon as the first epoch is logged (so the next epoch's reads hit the
    outage), keeps it down for `down_s`, then restarts it on the same port (or never, down_s=None)."""

    def __init__(self, s3: DurableS3, run_dir: Path, down_s: float | None):
        super().__init__(daemon=True)
        self.s3, self.run_dir, self.down_s = s3, run_dir, down_s
        self.epochs_at_stop, self.down_for, self.error = None, None, None

    def run(self):
        try:
            wait_for(lambda: epoch_metrics(self.run_dir), 240, "the first epoch", interval=0.02)
            self.s3.kill()
            self.epochs_at_stop = [m["epoch"] for m in epoch_metrics(self.run_dir)]
            stopped = time.time()
            if self.down_s is None:
                return
            time.sleep(self.down_s)
            self.s3.start()
            self.down_for = time.time() - stopped
        except BaseException as err:  # noqa: BLE001 - reported by the test
            self.error = err


def test_s3_server_down_10s_mid_run_reads_are_retried_and_run_completes(ray_session, tiny_root, tmp_path):
    """Data on a moto server in its own process; it is SIGKILLed right after epoch 1 and restarted
    on the same port 10 s later, with its objects intact (a real object store keeps them on disk;
    moto forgets them, so the restart reloads the same bytes before its port opens: `DurableS3`).

    Reads that fail meanwhile are retried (pyarrow's S3 retries, then Ray Data's retried
    NETWORK_CONNECTION errors with backoff); had they run out, the worker would fail and Ray Train
    would restart it from the epoch-1 checkpoint (max_failures=1). Either way the run completes and
    epoch 1 is never redone."""
    from clasp_dist.training.driver import run_training

    s3 = DurableS3(Path(tiny_root), "outage", "tiny")
    s3.start()
    cfg = run_cfg(
        tmp_path,
        "s3://outage/tiny",
        "train.epochs=2",
        "train.eval_every=2",
        "run.name=outage",
        f"storage.endpoint_url={s3.endpoint}",
        "storage.retries=2",
        "train.max_failures=1",
    )
    outage = Outage(s3, tmp_path / "outage", down_s=10)
    outage.start()
    try:
        started = time.time()
        summary = run_training(cfg)
        elapsed = time.time() - started
    finally:
        outage.join(30)
        s3.kill()
    assert outage.error is None, outage.error
    assert outage.epochs_at_stop == [0] and outage.down_for >= 10
    epochs = [m["epoch"] for m in epoch_metrics(summary.run_dir)]
    assert epochs.count(0) == 1 and max(epochs) == 1, epochs
    assert 0.0 <= summary.metrics["test"]["average"] <= 1.0
    print(f"S3 down {outage.down_for:.1f}s during epoch 2; run completed in {elapsed:.1f}s; epochs logged {epochs}")


def test_s3_server_gone_for_good_fails_clearly_with_a_resumable_checkpoint(ray_session, tiny_root, tmp_path):
    """The endpoint dies after epoch 1 and never comes back. Ray Data's own I/O retry budget (10
    attempts, backoff up to 32 s) would take minutes to run out, so this test empties its list of
    retried errors: the failure past the budget is then reached in seconds. Expect an error (no hang)
    that names the endpoint problem, and epoch 1's checkpoint registered and loadable for a rerun."""
    from ray.data import DataContext

    from clasp_dist.training.checkpoint import load_inference_model, load_train_state
    from clasp_dist.training.driver import run_training

    s3 = DurableS3(Path(tiny_root), "gone", "tiny")
    s3.start()
    cfg = run_cfg(
        tmp_path,
        "s3://gone/tiny",
        "train.epochs=2",
        "train.eval_every=2",
        "run.name=gone",
        f"storage.endpoint_url={s3.endpoint}",
        "storage.retries=1",
        "train.max_failures=0",
    )
    ctx = DataContext.get_current()
    saved = list(ctx.retried_io_errors)
    ctx.retried_io_errors = []
    outage = Outage(s3, tmp_path / "gone", down_s=None)
    outage.start()
    try:
        started = time.time()
        with pytest.raises(Exception) as info:
            run_training(cfg)
        elapsed = time.time() - started
    finally:
        ctx.retried_io_errors = saved
        outage.join(30)
        s3.kill()
    assert outage.error is None and outage.epochs_at_stop == [0]
    from clasp_dist.training.driver import TrainingError

    assert isinstance(info.value, TrainingError), info.value
    message = str(info.value)
    head = message.splitlines()[0]  # the root cause leads (Ray truncates worker tracebacks in the middle)
    assert head.startswith("training failed: rank 0: OSError"), message[-2000:]
    assert "NETWORK_CONNECTION" in head and "bucket 'gone'" in head and "tiny/train-" in head, head
    ckpts = registered_checkpoints(tmp_path / "gone")
    assert len(ckpts) == 1
    directory = tmp_path / "gone" / ckpts[0]
    assert load_train_state(directory).epoch == 0
    load_inference_model(directory)
    print(f"failed after {elapsed:.1f}s with: {message.splitlines()[-1][:300]}")


# ------------------------------------------------------------------------------ unwritable storage
def _assert_fails_before_training(cfg, tmp_path, *patterns, limit_s: float = 30):
    from clasp_dist.training.driver import run_training

    started = time.time()
    with pytest.raises(OSError) as info:
        run_training(cfg)
    assert time.time() - started < limit_s
    message = str(info.value)
    assert "run.storage_path=" in message and "cannot write checkpoints" in message, message
    for pattern in patterns:
        assert pattern in message, message
    assert not epoch_metrics(Path(cfg.run.output_dir) / cfg.run.name)  # no epoch was trained
    return message


def test_storage_path_under_a_file_fails_at_first_write(tmp_path, tiny_root):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    cfg = run_cfg(tmp_path, tiny_root, f"run.storage_path={blocker}/runs", "run.name=blocked")
    _assert_fails_before_training(cfg, tmp_path, str(blocker))


def test_storage_path_on_read_only_fs_fails_at_first_write(tmp_path, tiny_root):
    """Permission denied for real even as root: sysfs refuses mkdir (EPERM); chmod 0o500 would not,
    since root bypasses mode bits."""
    target = "/sys/clasp-dist-reliability-probe"
    try:
        os.mkdir(target)
    except OSError as err:
        assert err.errno in (errno.EPERM, errno.EACCES, errno.EROFS)
    else:  # pragma: no cover - a writable /sys: nothing to test here
        os.rmdir(target)
        pytest.skip("/sys is writable here")
    cfg = run_cfg(tmp_path, tiny_root, f"run.storage_path={target}/runs", "run.name=ro")
    _assert_fails_before_training(cfg, tmp_path, "PermissionError")


def test_storage_path_on_full_disk_fails_at_first_write(tmp_path, tiny_root):
    """A real full file system: a 64 KiB tmpfs filled up (needs root with CAP_SYS_ADMIN; else skipped)."""
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    if (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
    try:
        (mnt / "runs" / "full").mkdir(parents=True)
        with open(mnt / "filler", "wb", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"\0" * 4096)
            except OSError as err:
                assert err.errno == errno.ENOSPC
        cfg = run_cfg(tmp_path, tiny_root, f"run.storage_path={mnt}/runs", "run.name=full")
        _assert_fails_before_training(cfg, tmp_path, "No space left on device")
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_storage_path_in_missing_bucket_fails_and_creates_nothing(s3_server, tiny_root, tmp_path):
    import boto3

    cfg = run_cfg(tmp_path, tiny_root, "run.storage_path=s3://no-such-bucket-rel/runs", "run.name=nobucket")
    _assert_fails_before_training(cfg, tmp_path, "s3://no-such-bucket-rel/runs", "bucket does not exist")
    client = boto3.client("s3", endpoint_url=s3_server)
    assert "no-such-bucket-rel" not in [b["Name"] for b in client.list_buckets()["Buckets"]]


def test_storage_path_with_refused_credentials_fails_at_first_write(
    strict_s3, s3_server, tiny_root, tmp_path, monkeypatch
):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGKEY0000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    cfg = run_cfg(
        tmp_path,
        tiny_root,
        "run.storage_path=s3://denied/runs",
        "run.name=denied",
        f"storage.endpoint_url={strict_s3}",
        "storage.retries=1",
    )
    message = _assert_fails_before_training(cfg, tmp_path, "s3://denied/runs")
    assert "PermissionError" in message and "Access Key Id" in message, message
    assert "very-secret-value" not in message
