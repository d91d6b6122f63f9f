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


def test_the_sweep_callback_logs_each_trial_with_names_mlflow_accepts(ray_session, tmp_path, monkeypatch):
    """Real Ray Tune with the sweep's callback; a two-line trainable stands in for training (the callback sees only
    Tune's results, and `clasp tune`'s reports carry `@` in their names like this one)."""
    import mlflow
    import ray.tune

    from clasp_dist.config import load_config
    from clasp_dist.tracking import mlflow_tune_callback

    store = tmp_path / "mlruns"
    cfg = load_config(["config=tiny", f"tracking.mlflow_uri=file:{store}", "tracking.mlflow_experiment=sweep"])

    def trainable(params):
        ray.tune.report({"val_average": params["x"] / 10, "test_map@0.5": params["x"] / 20, "note": "text"})

    tuner = ray.tune.Tuner(
        trainable,
        param_space={"x": ray.tune.grid_search([1, 2])},
        run_config=ray.tune.RunConfig(storage_path=str(tmp_path / "tune"), callbacks=[mlflow_tune_callback(cfg)]),
    )
    assert not tuner.fit().errors
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = mlflow.MlflowClient(tracking_uri=f"file:{store}")
    runs = client.search_runs([client.get_experiment_by_name("sweep").experiment_id])
    assert sorted(run.data.params["x"] for run in runs) == ["1", "2"]
    assert sorted(run.data.metrics["test_map_0.5"] for run in runs) == [0.05, 0.1]
