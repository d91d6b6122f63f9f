"""The `clasp` command line: its subcommands, their --help, the `error: ` prefix and the exit codes."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from clasp_dist.cli import main as clasp
from clasp_dist.cli.app import build_parser
from clasp_dist.cli.common import (
    BAD_INPUT_TYPES,
    EXIT_BAD_INPUT,
    EXIT_PROBLEMS,
    MAX_ERROR_CHARS,
    bad_input_types,
    error_line,
)

SUBCOMMANDS = ["train", "tune", "evaluate", "predict", "diagnose", "data", "config"]
LEAVES = [
    ["train"],
    ["tune"],
    ["evaluate"],
    ["predict"],
    ["diagnose"],
    ["data", "prepare", "synth"],
    ["data", "prepare", "unav100"],
    ["data", "prepare", "anet13"],
    ["data", "index"],
    ["data", "inspect"],
    ["config", "show"],
]
"""Every command that runs: each --help lists the config keys it reads."""


def help_of(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as done:
        clasp([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_lists_the_subcommands_and_the_exit_codes(capsys):
    text = help_of([], capsys)
    for name in SUBCOMMANDS:
        assert f"\n    {name} " in text, name
    assert f"{EXIT_BAD_INPUT}  bad input" in text and "'error: '" in text and f"{EXIT_PROBLEMS}  problems found" in text


@pytest.mark.parametrize("argv", LEAVES, ids=" ".join)
def test_every_subcommand_explains_itself_and_its_keys(argv, capsys):
    text = help_of(argv, capsys)
    assert f"usage: clasp {' '.join(argv)}" in text and "key=value" in text
    assert "data.root = " in text and "storage.endpoint_url = " in text  # the generated key docs
    assert "Dataset root (local path" in text
    if argv[0] == "data":
        assert "model.d_model" not in text  # only the sections the data commands read
    else:
        assert "model.d_model = " in text and "train.epochs = " in text


def test_help_shows_the_values_the_overrides_give(capsys):
    text = help_of(["train", "config=tiny", "train.epochs=7"], capsys)
    assert "preset 'tiny' with the overrides given" in text and "train.epochs = 7" in text


def test_no_subcommand_repeats_a_config_key_as_a_flag():
    """Anything that is a config key is key=value: no flag spells one (--endpoint-url, --region, --data, ...)."""
    from clasp_dist.config import field_docs

    key_flags = {"--" + key.split(".", 1)[1].replace("_", "-") for key, _, _ in field_docs()} | {"--data", "--json-out"}
    key_flags -= {"--window"}  # anet13's feature grid (frames per feature), not model.window
    parser = build_parser()

    def flags(p: argparse.ArgumentParser) -> set[str]:
        found = {s for action in p._actions for s in action.option_strings}
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                found = found.union(*(flags(sub) for sub in action.choices.values()))
        return found

    assert not (flags(parser) & key_flags), flags(parser) & key_flags


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "bogus.key=1"], "unknown key 'bogus.key'"),
        (["train", "train.epochs=many"], "train.epochs"),
        (["train", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["nope"], "invalid choice: 'nope'"),
        (["config", "show", "data.root"], "override 'data.root' is not key=value"),
        (["config", "show", "config=tiny", "--out", "x", "data.root"], "unrecognized arguments: --out x data.root"),
        (["data", "inspect"], "data.root=ROOT"),
        (["predict", "--checkpoint", "c", "--out", "o"], "data.root=ROOT"),
        (["tune", "--resume"], "--resume needs --out"),
        (["tune", "--sweep", "ablation", "--grid", "optim.lr"], "expected KEY=V1,V2"),
        (["diagnose", "--checkpoint", "c", "--videos", "0"], "--videos must be >= 1"),
        (["evaluate", "--predictions", "p.json"], "give --predictions and --ground-truth"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(argv, message, capsys):
    try:
        rc = clasp(argv)
    except SystemExit as done:  # argparse's own usage errors
        rc = done.code
    err = capsys.readouterr().err
    assert rc == EXIT_BAD_INPUT, err
    assert message in err and "Traceback" not in err
    assert [line for line in err.splitlines() if not line.startswith("usage:") and line.strip()][0].startswith(
        "error: "
    ), err


def test_every_bad_input_type_names_a_real_class():
    """The handler looks the project's error types up by module name (so that handling one never imports torch):
    a module that moves must move here too, or its errors would end as tracebacks."""
    import importlib

    for module, name in BAD_INPUT_TYPES:
        cls = getattr(importlib.import_module(f"clasp_dist.{module}"), name)
        assert isinstance(cls, type) and issubclass(cls, Exception), (module, name)
        assert cls in bad_input_types()


def test_error_line_is_one_line_cut_to_the_bound():
    from clasp_dist.config import ConfigError

    line = error_line(ConfigError("first bad key\nsecond bad key\n" + "x" * 5000))
    assert "\n" not in line and len(line) == len("error: ") + MAX_ERROR_CHARS
    assert line.startswith("error: first bad key second bad key") and line.endswith("...")
    assert "/nowhere" in error_line(FileNotFoundError(2, "No such file", "/nowhere"))


def test_config_show_prints_a_preset_that_loads_back(tmp_path, capsys):
    from clasp_dist.config import load_config

    assert clasp(["config", "show", "config=tiny", "train.epochs=3", "data.root=/d"]) == 0
    preset = tmp_path / "p.yaml"
    preset.write_text(capsys.readouterr().out)
    cfg = load_config([f"config={preset}"])
    assert cfg.train.epochs == 3 and cfg.data.root == "/d" and cfg.data.synth_profile == "tiny"


def test_a_bug_keeps_its_traceback(monkeypatch):
    """Only the project's bad-input errors become one line; anything else (a bug) propagates."""
    from clasp_dist.cli import show_config

    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr(show_config, "run", broken)
    with pytest.raises(KeyError, match="a bug"):
        clasp(["config", "show"])


def test_python_m_and_the_job_wrapper_are_the_same_command(tmp_path):
    """`python -m clasp_dist.cli` and `python jobs/<job>.py` (what `ray job submit` runs) reach the same code."""
    from tests.helpers import REPO, job_env

    for argv in (["-m", "clasp_dist.cli", "data", "inspect"], [str(REPO / "jobs" / "inspect_data.py")]):
        done = subprocess.run(
            [sys.executable, *argv, f"data.root={tmp_path}"], env=job_env(), capture_output=True, text=True, timeout=60
        )
        assert done.returncode == EXIT_PROBLEMS and done.stderr.startswith("error: ") and "manifest.json" in done.stderr
