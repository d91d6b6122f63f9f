"""TensorBoard gets the final pass's metrics and the run's hyper-parameters (HParams), read back with
TensorBoard's own event reader."""

from __future__ import annotations

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from clasp_dist.config import load_config
from clasp_dist.tracking import hparam_values, log_final_to_tensorboard

METRICS = {
    "final": {"split": "validation", "0.5": 0.25, "0.9": 0.125, "average": 0.1875, "recall@1x": {"0.5": 0.5}},
    "validation": {"0.5": 0.25, "average": 0.1875},
    "best_epoch": 3,
}


def _hparams_of(events: EventAccumulator) -> dict:
    """The hyper-parameters of the HParams session-start record."""
    for content in events.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.HasField("session_start_info"):
            return {
                k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
                for k, v in data.session_start_info.hparams.items()
            }
    return {}


def test_final_metrics_and_hparams_in_the_runs_tensorboard(tmp_path):
    cfg = load_config(["config=tiny", "optim.lr=0.002", "train.epochs=4"])
    log_final_to_tensorboard(tmp_path, cfg, METRICS)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    scalars = {tag: events.Scalars(tag)[-1] for tag in events.Tags()["scalars"]}
    assert scalars["validation/map@0.5"].value == 0.25 and scalars["validation/map_average"].value == 0.1875
    assert scalars["validation/map@0.5"].step == 3 and "validation/map@recall@1x" not in scalars
    assert scalars["hparam/validation_map_average"].value == 0.1875
    hparams = _hparams_of(events)
    assert hparams["optim.lr"] == 0.002 and hparams["train.epochs"] == 4 and hparams["run.name"] == "tiny"
    assert set(hparams) == set(hparam_values(cfg))


def test_mlflow_names_uris_and_epoch_metrics(tmp_path, monkeypatch):
    from clasp_dist.tracking import absolute_mlflow_uri, mlflow_epoch_metrics, mlflow_tune_callback

    monkeypatch.chdir(tmp_path)
    assert absolute_mlflow_uri("file:runs/mlruns") == f"file:{tmp_path / 'runs' / 'mlruns'}"
    assert absolute_mlflow_uri("file:/x/mlruns") == "file:/x/mlruns"
    assert absolute_mlflow_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    record = {"loss": 0.5, "val_average": -1.0, "val_map@0.5": -1.0, "epoch": 2, "lr": 1e-3, "best_epoch": -1}
    assert mlflow_epoch_metrics(record, -1.0) == {"loss": 0.5, "lr": 1e-3}
    validated = {**record, "val_average": 0.2, "val_map@0.5": 0.3}
    assert mlflow_epoch_metrics(validated, -1.0) == {"loss": 0.5, "lr": 1e-3, "val_average": 0.2, "val_map_0.5": 0.3}
    assert mlflow_tune_callback(load_config(["config=tiny"])) is None
    callback = mlflow_tune_callback(load_config(["config=tiny", "tracking.mlflow_uri=file:mlruns"]))
    assert callback.tracking_uri == f"file:{tmp_path / 'mlruns'}" and callback.experiment_name == "clasp-dist"


def test_a_sweep_trial_leaves_mlflow_to_the_sweeps_callback(tmp_path):
    from clasp_dist.tuning.runner import trial_config

    cfg = trial_config(["config=tiny", "tracking.mlflow_uri=file:/x"], {}, "t1", str(tmp_path))
    assert cfg.tracking.mlflow_uri is None
