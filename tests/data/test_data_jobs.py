"""jobs/prepare_data.py and jobs/inspect_data.py, run in-process through their main()."""

from __future__ import annotations

import json

from tests.helpers import load_script


def _job(name):
    return load_script(f"jobs/{name}.py").main


def test_prepare_then_inspect(tmp_path, capsys):
    root = str(tmp_path / "ds")
    assert (
        _job("prepare_data")(
            [
                "synth",
                "--out",
                root,
                "--profile",
                "tiny",
                "--limit-per-split",
                "3",
                "--workers",
                "1",
                "--quiet",
                "--distractor-rate",
                "0.5",
            ]
        )
        == 0
    )
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["synth"]["profile"]["distractor_rate"] == 0.5
    assert _job("inspect_data")([root]) == 0
    out = capsys.readouterr().out
    assert "validation" in out and out.rstrip().endswith("OK")
    shard = tmp_path / "ds" / "validation-000000.tar"
    data = bytearray(shard.read_bytes())
    data[600] ^= 0xFF  # flip one byte inside the first .npy payload
    shard.write_bytes(bytes(data))
    assert _job("inspect_data")([root]) == 1
    assert "sha256" in capsys.readouterr().out
    assert _job("inspect_data")([root, "--no-verify-checksums"]) in (0, 1)


def test_inspect_missing_manifest(tmp_path, capsys):
    assert _job("inspect_data")([str(tmp_path)]) == 1
    assert "no manifest.json" in capsys.readouterr().err


def test_prepare_rejects_bad_features_dir(tmp_path, capsys):
    ann = tmp_path / "a.json"
    event = {"segment": [0.5, 1.5], "label": "dog", "label_id": 0}  # a class list exists; the features do not
    ann.write_text(json.dumps({"database": {"v1": {"subset": "train", "duration": 3.0, "annotations": [event]}}}))
    (tmp_path / "f").mkdir()
    rc = _job("prepare_data")(
        [
            "unav100",
            "--annotations",
            str(ann),
            "--features",
            str(tmp_path / "f"),
            "--feature-set",
            "i3d",
            "--out",
            str(tmp_path / "o"),
            "--quiet",
        ]
    )
    assert rc == 2 and "'v1'" in capsys.readouterr().err
