"""tracking.mlflow_uri: a tiny run logged through Ray's ``setup_mlflow`` into a real local MLflow file store, read
back with MLflow's own client."""

from __future__ import annotations

import json

import pytest

from tests.helpers import run_cfg

pytestmark = pytest.mark.slow


def test_a_run_logs_params_epoch_and_final_metrics_and_artifacts(ray_session, tiny_root, tmp_path, monkeypatch):
    import mlflow

    from clasp_dist.training.driver import run_training

    store = tmp_path / "mlruns"
    cfg = run_cfg(
        tmp_path / "run",
        tiny_root,
        "train.epochs=1",
        "optim.lr=0.0007",
        f"tracking.mlflow_uri=file:{store}",
        "tracking.mlflow_experiment=clasp-test",
    )
    summary = run_training(cfg)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3's file store is opt-in
    client = mlflow.MlflowClient(tracking_uri=f"file:{store}")
    experiment = client.get_experiment_by_name("clasp-test")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == cfg.run.name
    params = run.data.params
    assert params["optim.lr"] == "0.0007" and params["train.epochs"] == "1" and params["model.d_model"] == "32"
    metrics = run.data.metrics
    test_average = summary.metrics["test"]["average"]
    assert metrics["test/map_average"] == pytest.approx(test_average)
    assert metrics["val_average"] == pytest.approx(summary.metrics["validation"]["average"])
    assert "val_map_0.5" in metrics and "loss" in metrics
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [0]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "config.yaml"} <= artifacts
    local = client.download_artifacts(run.info.run_id, "metrics.json", str(tmp_path))
    assert json.loads(open(local).read())["test"]["average"] == test_average
