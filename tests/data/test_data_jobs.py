"""`clasp data prepare` and `clasp data inspect`, run in-process through the command line's main()."""

from __future__ import annotations

import json

from clasp_dist.cli import main as clasp
from clasp_dist.cli.common import EXIT_BAD_INPUT, EXIT_PROBLEMS


def prepare(*args: str) -> int:
    return clasp(["data", "prepare", *args])


def inspect(root: str, *args: str) -> int:
    return clasp(["data", "inspect", f"data.root={root}", *args])


def test_prepare_then_inspect(tmp_path, capsys):
    root = str(tmp_path / "ds")
    assert (
        prepare(
            "synth",
            f"data.root={root}",
            "data.synth_profile=tiny",
            "data.synth_limit_per_split=3",
            "data.synth_distractor_rate=0.5",
            "--workers",
            "1",
            "--quiet",
        )
        == 0
    )
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["synth"]["profile"]["distractor_rate"] == 0.5
    assert inspect(root) == 0
    out = capsys.readouterr().out
    assert "validation" in out and out.rstrip().endswith("OK")
    shard = tmp_path / "ds" / "validation-000000.tar"
    data = bytearray(shard.read_bytes())
    data[600] ^= 0xFF  # flip one byte inside the first .npy payload
    shard.write_bytes(bytes(data))
    assert inspect(root) == EXIT_PROBLEMS
    assert "sha256" in capsys.readouterr().out
    assert inspect(root, "--no-verify-checksums") in (0, EXIT_PROBLEMS)


def test_inspect_missing_manifest(tmp_path, capsys):
    assert inspect(str(tmp_path)) == EXIT_PROBLEMS  # a problem of the data: what inspect reports
    assert "no manifest.json" in capsys.readouterr().err


def test_prepare_rejects_bad_features_dir(tmp_path, capsys):
    ann = tmp_path / "a.json"
    event = {"segment": [0.5, 1.5], "label": "dog", "label_id": 0}  # a class list exists; the features do not
    ann.write_text(json.dumps({"database": {"v1": {"subset": "train", "duration": 3.0, "annotations": [event]}}}))
    (tmp_path / "f").mkdir()
    rc = prepare(
        "unav100",
        "--annotations",
        str(ann),
        "--features",
        str(tmp_path / "f"),
        "--feature-set",
        "i3d",
        f"data.root={tmp_path / 'o'}",
        "--quiet",
    )
    assert rc == EXIT_BAD_INPUT and "'v1'" in capsys.readouterr().err
