"""No credentials travel to Ray workers: every filesystem the project pickles (Ray Data's datasource, Ray
Train's and Tune's storage filesystem, the trainer itself) leaves them out, and each process resolves its own
through the SDK's provider chain, so temporary credentials (IRSA, EKS Pod Identity, instance roles) are
refreshed where they are used instead of being frozen on the head."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from clasp_dist.config import load_config
from clasp_dist.data import generate_dataset, read_manifest
from clasp_dist.data.filesystem import get_arrow_fs, get_fs
from clasp_dist.tuning import tune_storage

FAKE = {
    "AWS_ACCESS_KEY_ID": "ASIAFAKEKEYFORPICKLES",
    "AWS_SECRET_ACCESS_KEY": "fake-secret-that-must-never-be-pickled-1234",
    "AWS_SESSION_TOKEN": "fake-session-token-that-must-never-be-pickled-5678",
}


def _leaks(blob: bytes) -> list[str]:
    return [name for name, value in FAKE.items() if value.encode() in blob]


@pytest.fixture
def fake_keys(monkeypatch):
    for name, value in FAKE.items():
        monkeypatch.setenv(name, value)  # moto's default server accepts any key


@pytest.mark.slow
def test_nothing_pickled_to_workers_holds_a_credential(ray_session, s3_bucket, fake_keys, tmp_path):
    import ray.cloudpickle

    from clasp_dist.training.driver import build_trainer, dataset_info

    root = generate_dataset(f"{s3_bucket}/ds", "tiny", seed=0, workers=1, progress=False)
    cfg = load_config(["config=tiny", f"data.root={root}", f"run.storage_path={s3_bucket}/runs"])
    info, _ = dataset_info(root, cfg)
    trainer = build_trainer(cfg, root, info, read_manifest(root).splits["train"].videos, tmp_path / "run")
    pickled = {
        "arrow filesystem": get_arrow_fs(root)[0],
        "fsspec filesystem": get_fs(root)[0],
        "Tune storage": tune_storage(f"{s3_bucket}/sweeps/x")[1],
        "TorchTrainer (datasets, storage filesystem)": trainer,
    }
    for what, obj in pickled.items():
        assert _leaks(ray.cloudpickle.dumps(obj)) == [], f"{what} carries credentials to the workers"
    # The Ray workers (started with the session's own keys) still read the dataset through the datasource.
    train = trainer.datasets["train"]
    assert train.count() == read_manifest(root).splits["train"].videos


def test_an_unpickled_filesystem_uses_the_credentials_of_its_own_process(s3_server, s3_bucket, fake_keys):
    """A worker with other credentials than the driver writes and reads through the driver's filesystem."""
    import pyarrow.fs  # noqa: F401 - the pickle below names it
    import ray.cloudpickle

    fs, base = get_arrow_fs(f"{s3_bucket}/w")
    blob = ray.cloudpickle.dumps(fs)
    assert _leaks(blob) == []
    worker = (
        "import sys, ray.cloudpickle as p; fs = p.loads(sys.stdin.buffer.read()); "
        f"f = fs.open_output_stream('{base}/from-worker'); f.write(b'ok'); f.close(); "
        f"print(fs.open_input_stream('{base}/from-worker').read().decode()); "
        "del fs; import pyarrow.fs; pyarrow.fs.finalize_s3()"  # else pyarrow aborts at exit
    )
    env = {k: v for k, v in os.environ.items() if k not in FAKE}
    env.update(AWS_ACCESS_KEY_ID="worker-own-key", AWS_SECRET_ACCESS_KEY="worker-own-secret")
    out = subprocess.run([sys.executable, "-c", worker], input=blob, env=env, capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert out.stdout.decode().strip() == "ok"
    assert get_fs(f"{s3_bucket}/w")[0].cat_file(f"{base}/from-worker") == b"ok"
