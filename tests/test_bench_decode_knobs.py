"""bench/decode_knobs.py: the variant table and its command line (the evaluation itself is the evaluator's)."""

from __future__ import annotations

import importlib

import pytest

from clasp_dist.config import load_config
from clasp_dist.tuning import ABLATION_ARMS


def load_knobs():
    return importlib.import_module("bench.decode_knobs")


def test_anchor_policy_variants_are_the_control_arm_and_the_preset():
    knobs = load_knobs()
    control = load_config([f"{k}={v}" for k, v in ABLATION_ARMS["control/all-anchors"].items()]).model
    swapped = load_config(knobs.VARIANTS["all-anchors"]).model
    assert (swapped.csai_global, swapped.csai_local, swapped.global_ratio) == (
        control.csai_global,
        control.csai_local,
        control.global_ratio,
    )
    # applied to the control's own config, `selected-anchors` gives back the preset's CLASP selection
    preset = load_config([]).model
    restored = load_config([*knobs.VARIANTS["all-anchors"], *knobs.VARIANTS["selected-anchors"]]).model
    assert (restored.csai_local, restored.global_ratio) == (preset.csai_local, preset.global_ratio)


def test_unknown_variant_is_refused_naming_the_choices(tmp_path, capsys):
    knobs = load_knobs()
    with pytest.raises(SystemExit):
        knobs.main(["x/export", "--out", str(tmp_path / "o.json"), "--variants", "default,relativ"])
    err = capsys.readouterr().err
    assert "relativ" in err and "all-anchors" in err
