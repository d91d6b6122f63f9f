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
