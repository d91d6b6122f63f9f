"""gs:// roots against a real GCS-compatible server on 127.0.0.1 (fake-gcs-server, tests/conftest.py):
byte-identical round trips through gcsfs and pyarrow's GcsFileSystem, `clasp data prepare synth data.root=gs://...`,
Application Default Credentials served by a local OAuth token endpoint, and clear, fast errors for an
unreachable endpoint and refused credentials."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
import time

import pytest

from clasp_dist.config import StorageConfig
from clasp_dist.data import StorageError, generate_dataset, read_manifest
from clasp_dist.data.filesystem import get_arrow_fs, get_fs, storage_errors
from clasp_dist.data.split_reader import iter_local_samples
from tests.helpers import free_port


def _emulator(endpoint: str, **kw) -> StorageConfig:
    return StorageConfig(gcs_endpoint_url=endpoint, anon=True, **kw)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_round_trip_is_byte_identical_through_gcsfs_and_arrow(gcs_bucket, gcs_server, tmp_path):
    cfg = _emulator(gcs_server)
    local = generate_dataset(str(tmp_path / "tiny"), "tiny", seed=0, limit_per_split=6, workers=1, progress=False)
    remote = generate_dataset(
        f"{gcs_bucket}/some/prefix", "tiny", seed=0, limit_per_split=6, workers=1, progress=False, storage_cfg=cfg
    )
    manifest = read_manifest(remote, cfg)
    assert manifest.splits == read_manifest(local).splits  # same shards, same sha256
    fs, base = get_fs(remote, cfg)
    arrow, arrow_base = get_arrow_fs(remote, cfg)
    assert type(arrow).__name__ == "GcsFileSystem" and arrow_base == base
    for split in manifest.splits.values():
        for shard in split.shards:
            want = (tmp_path / "tiny" / shard.path).read_bytes()
            assert _sha(fs.cat(f"{base}/{shard.path}")) == shard.sha256 == _sha(want)
            with arrow.open_input_stream(f"{base}/{shard.path}") as handle:
                assert handle.read() == want
    remote_ids = [s["video_id"] for s in iter_local_samples(remote, "test", storage_cfg=cfg)]
    assert remote_ids == [s["video_id"] for s in iter_local_samples(local, "test")]


def test_prepare_data_writes_to_gs(gcs_bucket, gcs_server):
    from clasp_dist.cli import main as clasp

    root = f"{gcs_bucket}/cli"
    argv = ["data", "prepare", "synth", f"data.root={root}", "data.synth_profile=tiny", "data.synth_limit_per_split=2"]
    argv += [f"storage.gcs_endpoint_url={gcs_server}", "storage.anon=true", "--workers", "1", "--quiet"]
    assert clasp(argv) == 0
    assert read_manifest(root, _emulator(gcs_server)).splits["test"].videos == 2


def test_unreachable_endpoint_fails_fast_with_clear_error():
    endpoint = f"http://127.0.0.1:{free_port()}"
    start = time.perf_counter()
    with pytest.raises(StorageError, match=rf"unreachable.*'gs://bucket/ds'.*{endpoint}"):
        read_manifest("gs://bucket/ds", _emulator(endpoint, retries=2))
    with pytest.raises(StorageError, match="unreachable"):
        generate_dataset(
            "gs://bucket/ds",
            "tiny",
            limit_per_split=1,
            workers=1,
            progress=False,
            storage_cfg=_emulator(endpoint, retries=1),
        )
    assert time.perf_counter() - start < 15
    start = time.perf_counter()
    with pytest.raises(StorageError, match="unreachable"):  # the pyarrow path (Ray Data, Train checkpoints)
        with storage_errors("gs://bucket/ds", _emulator(endpoint, retries=1)):
            arrow, base = get_arrow_fs("gs://bucket/ds", _emulator(endpoint, retries=1))
            arrow.get_file_info(f"{base}/manifest.json")
    assert time.perf_counter() - start < 15


class _TokenEndpoint(http.server.BaseHTTPRequestHandler):
    """OAuth2 token endpoint: /grant issues an access token, anything else refuses (invalid_grant)."""

    def do_POST(self):  # noqa: N802 - http.server API
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/grant":
            code, body = 200, {"access_token": "local-test-token", "expires_in": 3600, "token_type": "Bearer"}
        else:
            code, body = 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def token_endpoint():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TokenEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _service_account_file(tmp_path, token_uri: str) -> str:
    """A service-account key made now (never stored in the repository) whose token exchange goes to token_uri."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = tmp_path / "sa.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "test",
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": "clasp-test@test.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": token_uri,
            }
        )
    )
    return str(path)


def test_application_default_credentials_write_and_read(gcs_bucket, gcs_server, token_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", _service_account_file(tmp_path, f"{token_endpoint}/grant"))
    cfg = StorageConfig(gcs_endpoint_url=gcs_server)
    fs, base = get_fs(f"{gcs_bucket}/adc", cfg)
    with fs.open(f"{base}/x.bin", "wb") as handle:
        handle.write(b"\x00\x01payload")
    arrow, _ = get_arrow_fs(f"{gcs_bucket}/adc", cfg)
    with arrow.open_input_stream(f"{base}/x.bin") as handle:
        assert handle.read() == b"\x00\x01payload"


def test_predictions_json_round_trip_with_the_environment_only(
    gcs_bucket, gcs_server, token_endpoint, tmp_path, monkeypatch
):
    """Paths without a config (predictions, annotations, metrics) use STORAGE_EMULATOR_HOST and ADC."""
    from clasp_dist.data.annotations import read_document
    from clasp_dist.evaluation.formats import write_json

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.split("://", 1)[1])
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", _service_account_file(tmp_path, f"{token_endpoint}/grant"))
    document = {
        "version": "VERSION 1.3",
        "results": {"v1": [{"label": "dog", "score": 0.1 + 0.2, "segment": [1.0, 2.5]}]},
    }
    write_json(f"{gcs_bucket}/eval/predictions_test.json", document)
    parsed, name = read_document(f"{gcs_bucket}/eval/predictions_test.json")
    assert parsed == document and name == f"{gcs_bucket}/eval/predictions_test.json"


def test_evaluation_loads_an_export_from_gs(gcs_bucket, gcs_server, token_endpoint, tmp_path, monkeypatch):
    """`evaluate/predict --checkpoint gs://...`: model.json and weights.pt are fetched, nothing else."""
    import torch

    from clasp_dist.config import load_config
    from clasp_dist.data.filesystem import local_copy
    from clasp_dist.data.manifest import DatasetInfo
    from clasp_dist.inference.predict import load_for_evaluation
    from clasp_dist.model import build_model
    from clasp_dist.training.checkpoint import save_model_description, save_tensors

    cfg = load_config(["config=tiny"])
    info = DatasetInfo("tiny", [f"c{i}" for i in range(5)], 16, 8, 25.0, 8, 24)
    model = build_model(cfg, info)
    export = tmp_path / "export"
    export.mkdir()
    save_model_description(export, cfg, info)
    save_tensors(export / "weights.pt", model.state_dict())
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", _service_account_file(tmp_path, f"{token_endpoint}/grant"))
    fs, base = get_fs(f"{gcs_bucket}/runs/x/export")
    for name in ("model.json", "weights.pt"):
        fs.put_file(str(export / name), f"{base}/{name}")
    fs.pipe_file(f"{base}/optimizer_shard.pt", b"not needed")  # never downloaded
    loaded, loaded_cfg, loaded_info = load_for_evaluation(f"{gcs_bucket}/runs/x/export", ["eval.num_actors=1"])
    assert loaded_info == info and loaded_cfg.model == cfg.model and loaded_cfg.eval.num_actors == 1
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with local_copy(f"{gcs_bucket}/runs/x/export", names=("model.json",)) as directory:
        assert os.listdir(directory) == ["model.json"]
    with pytest.raises(FileNotFoundError, match="nothing to read"):
        load_for_evaluation(f"{gcs_bucket}/runs/x/no-such-export", [])
    # a raw checkpoint trained with the EMA has no weights.pt: its inference weights are ema.pt's shadow
    shadow = {k: v + 1.0 for k, v in model.state_dict().items() if v.dtype.is_floating_point}
    save_tensors(tmp_path / "ema.pt", {"shadow": shadow})
    raw = base.rsplit("/", 1)[0] + "/checkpoint_000001"
    fs.put_file(str(export / "model.json"), f"{raw}/model.json")
    fs.put_file(str(tmp_path / "ema.pt"), f"{raw}/ema.pt")
    loaded, _, _ = load_for_evaluation(f"{gcs_bucket}/runs/x/checkpoint_000001", [])
    for key, value in shadow.items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_refused_credentials_fail_fast_and_are_not_printed(
    gcs_bucket, gcs_server, token_endpoint, tmp_path, monkeypatch
):
    sa = _service_account_file(tmp_path, f"{token_endpoint}/refuse")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", sa)
    cfg = StorageConfig(gcs_endpoint_url=gcs_server, retries=2)
    start = time.perf_counter()
    with pytest.raises(StorageError, match=r"access refused.*Google.*credentials.*gs://") as info:
        read_manifest(f"{gcs_bucket}/ds", cfg)
    assert time.perf_counter() - start < 15
    key = json.loads(open(sa).read())["private_key"]
    assert key[40:80] not in str(info.value) and key[40:80] not in repr(info.value.__cause__)


def test_refused_user_credentials_on_the_arrow_path(gcs_bucket, gcs_server, token_endpoint, tmp_path, monkeypatch):
    """pyarrow's GcsFileSystem (Ray Data, Train checkpoints) asks the token endpoint of an authorized-user file."""
    user = tmp_path / "user.json"
    user.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "c",
                "client_secret": "s" * 12,
                "refresh_token": "r" * 12,
                "token_uri": f"{token_endpoint}/refuse",
            }
        )
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(user))
    cfg = StorageConfig(gcs_endpoint_url=gcs_server, retries=2)
    start = time.perf_counter()
    with pytest.raises(StorageError, match="access refused"):
        with storage_errors(f"{gcs_bucket}/ds", cfg):
            arrow, base = get_arrow_fs(f"{gcs_bucket}/ds", cfg)
            arrow.get_file_info(f"{base}/manifest.json")
    assert time.perf_counter() - start < 15


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_training_with_data_and_checkpoints_on_gcs(ray_session, gcs_bucket, gcs_server, tmp_path):
    """Ray Data reads the shards and Ray Train writes its checkpoints through pyarrow's GcsFileSystem."""
    from clasp_dist.config import load_config
    from clasp_dist.training.driver import run_training

    storage = [f"storage.gcs_endpoint_url={gcs_server}", "storage.anon=true"]
    cfg_storage = _emulator(gcs_server)
    data = generate_dataset(
        f"{gcs_bucket}/tiny", "tiny", seed=0, limit_per_split=8, workers=1, progress=False, storage_cfg=cfg_storage
    )
    cfg = load_config(
        [
            "config=tiny",
            "train.epochs=1",
            "train.eval_every=1",
            "train.progress_bar=off",
            f"data.root={data}",
            f"run.output_dir={tmp_path}",
            f"run.storage_path={gcs_bucket}/runs",
            "run.name=on-gcs",
            *storage,
        ]
    )
    summary = run_training(cfg)
    fs, base = get_fs(f"{gcs_bucket}/runs/on-gcs", cfg_storage)
    names = [p.rsplit("/", 1)[-1] for p in fs.ls(base, detail=False)]
    checkpoints = [n for n in names if n.startswith("checkpoint_2")]  # not checkpoint_manager_snapshot.json
    assert checkpoints, names
    assert fs.ls(f"{base}/{checkpoints[0]}", detail=False)  # the checkpoint's files are in the bucket
    assert (tmp_path / "on-gcs" / "export").is_dir()
    assert "test" in summary.metrics or summary.metrics, summary
