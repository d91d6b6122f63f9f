"""Config: presets, dotted overrides, validation errors naming the key, round trip, --help docs."""

import dataclasses

import pytest

from clasp_dist.config import (
    Config,
    ConfigError,
    field_docs,
    from_dict,
    load_config,
    load_saved_config,
    preset_names,
    save_config,
    to_dict,
)


def test_every_preset_loads_and_validates():
    assert {"tiny", "small", "unav100_i3d", "unav100_onepeace", "anet13"} <= set(preset_names())
    for name in preset_names():
        assert isinstance(load_config([f"config={name}"]), Config)


def test_overrides_are_typed_and_applied():
    cfg = load_config(
        [
            "config=tiny",
            "optim.lr=3e-4",
            "train.epochs=5",
            "model.use_atp=false",
            "eval.tiou_thresholds=[0.3,0.5]",
            "data.root=s3://bucket/x",
        ]
    )
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.train.epochs == 5 and cfg.model.use_atp is False
    assert cfg.eval.tiou_thresholds == (0.3, 0.5) and cfg.data.root == "s3://bucket/x"
    assert cfg.model.d_model == 32  # from the tiny preset
    assert load_config(["train.progress_bar=off", "model.use_atp=no", "model.use_meae=on"]).train.progress_bar == "off"


@pytest.mark.parametrize(
    "override, names",
    [
        ("model.d_modl=3", "model.d_modl"),
        ("nosuch.key=1", "nosuch.key"),
        ("model.d_model=abc", "model.d_model"),
        ("model.discrepancy=cosine", "model.discrepancy"),
        ("train.epochs", "train.epochs"),
        ("deepspeed.zero_stage=4", "deepspeed.zero_stage"),
        ("model.mil_ratio=0", "model.mil_ratio"),  # ranges: pydantic Field constraints
        ("model.dropout=1", "model.dropout"),
        ("data.max_skipped_fraction=1.5", "data.max_skipped_fraction"),
        ("optim.lr=0", "optim.lr"),
    ],
)
def test_bad_overrides_name_the_key(override, names):
    with pytest.raises(ConfigError, match=names.replace(".", r"\.")):
        load_config([override])


def test_cross_field_rules():
    with pytest.raises(ConfigError, match="use_meae"):
        load_config(["model.use_meae=false"])  # ATP still on
    with pytest.raises(ConfigError, match="n_heads"):
        load_config(["model.d_model=30", "model.n_heads=4"])
    base = load_config(["model.use_meae=false", "model.use_atp=false"])
    assert not base.model.clasp_enabled


def test_unknown_preset_lists_presets():
    with pytest.raises(ConfigError, match="tiny"):
        load_config(["config=nope"])


def test_saved_config_loads_back(tmp_path):
    cfg = load_config(["config=tiny", "optim.lr=0.002", "eval.tiou_thresholds=[0.5]"])
    save_config(cfg, tmp_path / "c.yaml")
    assert load_saved_config(tmp_path / "c.yaml") == cfg
    assert from_dict(to_dict(cfg)) == cfg


def test_mapping_overrides_match_cli_overrides():
    """A Tune param_space uses the same flat keys as the CLI."""
    assert load_config({"config": "tiny", "optim.lr": 0.002}) == load_config(["config=tiny", "optim.lr=0.002"])


def test_every_field_has_a_docstring():
    docs = field_docs()
    assert len(docs) == sum(len(dataclasses.fields(getattr(Config(), f.name))) for f in dataclasses.fields(Config))
    missing = [key for key, doc, _ in docs if not doc]
    assert not missing, missing


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().train.epochs = 3  # type: ignore[misc]


def test_help_shows_the_values_that_will_run():
    """`--help` lists the chosen preset's values (default `small`), not the schema defaults."""
    from clasp_dist.config import help_text

    def shown(text: str, key: str) -> str:
        return next(line for line in text.splitlines() if line.startswith(f"  {key} = ")).split(" = ", 1)[1]

    small, tiny = load_config([]), load_config(["config=tiny"])
    assert small.train.epochs != Config().train.epochs  # otherwise this test shows nothing
    default = help_text([])
    assert "preset 'small' (the default" in default
    assert shown(default, "train.epochs") == repr(small.train.epochs)
    assert shown(default, "model.d_model") == repr(small.model.d_model)
    assert shown(default, "optim.lr") == repr(small.optim.lr)
    chosen = help_text(["config=tiny", "train.epochs=5", "--help"])
    assert "preset 'tiny' with the overrides given" in chosen
    assert shown(chosen, "model.d_model") == repr(tiny.model.d_model) and shown(chosen, "train.epochs") == "5"
    assert "do not load" in help_text(["config=nope"])
