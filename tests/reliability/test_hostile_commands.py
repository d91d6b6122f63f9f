"""Hostile input to every command, as a table: the command line is data, the outcome is an exit status.

Each row builds its input under ``in/`` (datasets, checkpoints, annotation and results JSON, configs, FIFOs,
links to devices), then runs one command in a child process with its own HOME, TMPDIR and working folder and
an address-space limit (``RLIMIT_AS``, :data:`MEMORY_LIMIT`), so that a memory bomb that gets through fails
this test instead of the machine. Every row asserts:

* the exit status of the row;
* stderr holds no traceback, is short, and its last line is ``error: ...`` naming what the row names;
* nothing was created outside ``out/`` (HOME, the working folder and ``in/`` included);
* no input file changed (type, size and sha256 of every file, the target of every link).

The command lines name the subcommands through :data:`COMMANDS` only, so that they move in one place when the
command line changes. Every row is refused before Ray starts (a few seconds each); the rows that need Ray
to find their input bad live in test_bad_input_corpus.py and test_hostile_input.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import stat
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from tests.data.data_helpers import good_members, tar_bytes, write_dataset_from_tars  # noqa: E402

from .test_bad_input_corpus import BASE_DB, checkpoint_dir, perfect_entries  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MEMORY_LIMIT = 3 << 30
"""Address space of each command (torch and pyarrow import in about 2 GiB of it); a bomb would need far more."""
MAX_STDERR = 2000
"""Characters of stderr a refused command may print."""

CLASP = ["-m", "clasp_dist.cli"]
COMMANDS = {
    "train": [*CLASP, "train"],
    "tune": [*CLASP, "tune"],
    "evaluate": [*CLASP, "evaluate"],
    "predict": [*CLASP, "predict"],
    "diagnose": [*CLASP, "diagnose"],
    "inspect": [*CLASP, "data", "inspect"],
    "prepare": [*CLASP, "data", "prepare"],
}
"""Command name -> the argv prefix that runs it (the one place to change when the command line changes)."""


@dataclass
class Row:
    build: Callable[[Path], dict]
    """Writes the input under the given folder (``in/``); returns names for the command line (``{root}``...)."""
    command: str
    args: tuple[str, ...]
    """Arguments after the command; ``{out}`` is the output folder, ``{in}`` the input folder, plus build's names."""
    status: int
    names: tuple[str, ...] = ()
    """Substrings of the last stderr line (formatted like ``args``)."""


ROWS: dict[str, Row] = {}


def row(name: str, build, command: str, *args: str, status: int = 2, names: tuple[str, ...] = ()) -> None:
    ROWS[name] = Row(build, command, args, status, names)


# ------------------------------------------------------------------------------------------- builders
def nothing(tmp: Path) -> dict:
    return {}


def dataset(tmp: Path) -> Path:
    return write_dataset_from_tars(tmp / "ds", {"validation": [(tar_bytes([("v0", good_members("v0"))]), 1)]})


def with_manifest(edit):
    def build(tmp: Path) -> dict:
        root = dataset(tmp)
        path = root / "manifest.json"
        doc = json.loads(path.read_text())
        result = edit(doc, root)
        if result is not None:
            path.write_bytes(result if isinstance(result, bytes) else result.encode())
        else:
            path.write_text(json.dumps(doc))
        return {"root": root}

    return build


def _fifo_manifest(tmp: Path) -> dict:
    root = dataset(tmp)
    (root / "manifest.json").unlink()
    os.mkfifo(root / "manifest.json")
    return {"root": root}


def _many_splits(doc, root):
    doc["splits"] = {f"s{i}": {"videos": 0, "shards": []} for i in range(1_000_000)}
    return json.dumps(doc)


def _many_shards(doc, root):
    split = doc["splits"]["validation"]
    split["shards"] = [{"path": f"x{i}.tar", "videos": 0, "sha256": "0"} for i in range(300_000)]
    return json.dumps(doc)


def _deep(doc, root):
    return "[" * 100_000 + "]" * 100_000


def _shard_replaced(make):
    def build(tmp: Path) -> dict:
        root = dataset(tmp)
        shard = root / "validation-000000.tar"
        shard.unlink()
        make(shard)
        return {"root": root}

    return build


def _pax_bomb(shard: Path) -> None:
    """A PAX extended header claiming 1 GiB: the file is sparse (no disk used), tarfile would read it whole."""
    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, 1 << 30
    block = header.tobuf(format=tarfile.USTAR_FORMAT)
    with open(shard, "wb") as f:
        f.write(block)
        f.truncate(len(block) + (1 << 30) + 1024)


def _non_utf8_id(tmp: Path) -> dict:
    """A GNU-format member name with a byte that is not UTF-8: tarfile reads it as a surrogate."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tar:
        for suffix, data in good_members("v\xe9").items():
            info = tarfile.TarInfo(f"v\xe9.{suffix}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    root = write_dataset_from_tars(tmp / "ds", {"validation": [(buf.getvalue(), 1)]})
    return {"root": root}


def checkpoint(edit=None):
    def build(tmp: Path) -> dict:
        directory = checkpoint_dir(tmp)
        if edit is not None:
            edit(directory)
        return {"ckpt": directory, "root": dataset(tmp)}

    return build


def _model_json(change):
    def edit(directory: Path) -> None:
        path = directory / "model.json"
        doc = json.loads(path.read_text())
        change(doc)
        path.write_text(json.dumps(doc))

    return edit


def _set(section: str, key: str, value):
    return _model_json(lambda doc: doc[section].__setitem__(key, value) if section == "dataset" else None)


def _set_config(dotted: str, value):
    def change(doc):
        section, key = dotted.split(".")
        doc["config"][section][key] = value

    return _model_json(change)


def _pickled(directory: Path) -> None:
    import pickle

    (directory / "weights.pt").write_bytes(pickle.dumps({"w": [1, 2, 3]}))


def files(gt_text: str | None = None, pred_text: str | None = None):
    def build(tmp: Path) -> dict:
        gt, pred = tmp / "gt.json", tmp / "pred.json"
        gt.write_text(gt_text if gt_text is not None else json.dumps({"database": BASE_DB}))
        pred.write_text(pred_text if pred_text is not None else json.dumps({"results": perfect_entries()}))
        (tmp / "a_file").write_text("x")
        return {"gt": gt, "pred": pred}

    return build


def _gt(**video) -> str:
    return json.dumps({"database": {**BASE_DB, "vx": video}})


def _ann(**fields) -> dict:
    return {"segment": [1.0, 2.0], "label": "dog", "label_id": 1, **fields}


BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi")
)


def config_file(text: str):
    def build(tmp: Path) -> dict:
        path = tmp / "hostile.yaml"
        path.write_text(text)
        return {"yaml": path}

    return build


def a_file(tmp: Path) -> dict:
    (tmp / "a_file").write_text("x")
    return {"file": tmp / "a_file"}


# ------------------------------------------------------------------------------------------- the table
# class 1: nothing written outside the output
row(
    "train_run_name_traversal",
    nothing,
    "train",
    "config=tiny",
    "run.name=../../escaped",
    "run.output_dir={out}",
    "run.storage_path={out}",
    names=("run.name",),
)
row(
    "train_run_name_absolute",
    nothing,
    "train",
    "config=tiny",
    "run.name={in}/abs",
    "run.output_dir={out}",
    "run.storage_path={out}",
    names=("run.name",),
)
row(
    "tune_run_name_traversal",
    nothing,
    "tune",
    "--sweep",
    "ablation",
    "--out",
    "{out}/sweep",
    "config=tiny",
    "run.name=../x",
    names=("run.name",),
)
row(
    "predict_out_is_a_file",
    checkpoint(),
    "predict",
    "--checkpoint",
    "{ckpt}",
    "data.root={root}",
    "--split",
    "validation",
    "--out",
    "{ckpt}/model.json",
    names=("output folder", "not a directory"),
)
row(
    "evaluate_json_out_under_a_file",
    files(),
    "evaluate",
    "--predictions",
    "{pred}",
    "--ground-truth",
    "{gt}",
    "--out",
    "{in}/a_file/m",
    names=("a_file", "not a directory"),
)
row(
    "evaluate_out_is_a_file",
    checkpoint(),
    "evaluate",
    "--checkpoint",
    "{ckpt}",
    "data.root={root}",
    "--split",
    "validation",
    "--out",
    "{ckpt}/model.json",
    names=("output folder", "not a directory"),
)
row(
    "diagnose_out_is_a_file",
    checkpoint(),
    "diagnose",
    "--checkpoint",
    "{ckpt}",
    "data.root={root}",
    "--split",
    "validation",
    "--out",
    "{ckpt}/model.json",
    names=("output folder",),
)
row(
    "predict_split_traversal",
    checkpoint(),
    "predict",
    "--checkpoint",
    "{ckpt}",
    "data.root={root}",
    "--split",
    "../../etc",
    "--out",
    "{out}/p",
    names=("unknown split",),
)

# class 2: every read bounded before it happens
row("inspect_manifest_is_a_fifo", _fifo_manifest, "inspect", "data.root={root}", status=1, names=("FIFO",))
row(
    "train_manifest_is_a_fifo",
    _fifo_manifest,
    "train",
    "config=tiny",
    "data.root={root}",
    "run.output_dir={out}",
    "run.storage_path={out}",
    names=("FIFO",),
)
row("inspect_shard_is_a_fifo", _shard_replaced(os.mkfifo), "inspect", "data.root={root}", status=1, names=("FIFO",))
row(
    "inspect_shard_links_to_dev_zero",
    _shard_replaced(lambda p: p.symlink_to("/dev/zero")),
    "inspect",
    "data.root={root}",
    status=1,
    names=("validation-000000.tar",),
)
row(
    "inspect_pax_header_of_a_gibibyte",
    _shard_replaced(_pax_bomb),
    "inspect",
    "data.root={root}",
    "--no-verify-checksums",
    status=1,
    names=("PAX",),
)
row(
    "inspect_manifest_million_splits",
    with_manifest(_many_splits),
    "inspect",
    "data.root={root}",
    status=1,
    names=("splits",),
)
row(
    "inspect_manifest_300k_shards",
    with_manifest(_many_shards),
    "inspect",
    "data.root={root}",
    status=1,
    names=("shards",),
)
row(
    "predict_manifest_deeply_nested",
    with_manifest(_deep),
    "predict",
    "--checkpoint",
    "{in}/none",
    "data.root={root}",
    "--out",
    "{out}/p",
    names=("manifest.json", "nested"),
)
row(
    "evaluate_ground_truth_is_a_fifo",
    files(),
    "evaluate",
    "--predictions",
    "{pred}",
    "--ground-truth",
    "{in}/fifo",
    names=("FIFO",),
)
row(
    "evaluate_results_deeply_nested",
    files(pred_text="[" * 200_000),
    "evaluate",
    "--predictions",
    "{pred}",
    "--ground-truth",
    "{gt}",
    names=("pred.json", "nested"),
)
row(
    "train_config_billion_laughs",
    config_file(BILLION_LAUGHS),
    "train",
    "config={yaml}",
    "run.output_dir={out}",
    names=("aliases",),
)
row(
    "evaluate_model_json_is_a_fifo",
    checkpoint(lambda d: ((d / "model.json").unlink(), os.mkfifo(d / "model.json"))),
    "evaluate",
    "--checkpoint",
    "{ckpt}",
    "data.root={root}",
    "--split",
    "validation",
    names=("FIFO",),
)

# class 3: every allocation from input bounded before it happens
row(
    "predict_model_json_huge_d_model",
    checkpoint(_set_config("model.d_model", 1 << 30)),
    "predict",
    "--checkpoint",
    "{ckpt}",
    "data.root={root}",
    "--split",
    "validation",
    "--out",
    "{out}/p",
    names=("model.json", "d_model"),
)
row(
    "evaluate_model_json_huge_max_len",
    checkpoint(_set_config("model.max_len", 1 << 40)),
    "evaluate",
    "--checkpoint",
    "{ckpt}",
    "data.root={root}",
    "--split",
    "validation",
    names=("model.json", "max_len"),
)
row(
    "diagnose_model_json_huge_feature_dim",
    checkpoint(_set("dataset", "visual_dim", 1 << 40)),
    "diagnose",
    "--checkpoint",
    "{ckpt}",
    "data.root={root}",
    "--split",
    "validation",
    names=("visual_dim",),
)
row(
    "evaluate_tiou_tiny_step",
    files(),
    "evaluate",
    "--predictions",
    "{pred}",
    "--ground-truth",
    "{gt}",
    "eval.tiou_thresholds=0:1:1e-9",
    names=("tIoU",),
)
row(
    "train_override_of_100k_characters",
    nothing,
    "train",
    "config=tiny",
    "train.epochs=" + "9" * 100_000,
    names=("train.epochs", "over the bound"),
)

# class 4: one line for bad input
row(
    "predict_pickled_weights",
    checkpoint(_pickled),
    "predict",
    "--checkpoint",
    "{ckpt}",
    "data.root={root}",
    "--split",
    "validation",
    "--out",
    "{out}/p",
    names=("weights.pt",),
)
row(
    "predict_missing_manifest",
    checkpoint(lambda d: None),
    "predict",
    "--checkpoint",
    "{ckpt}",
    "data.root={in}/nowhere",
    "--out",
    "{out}/p",
    names=("manifest.json",),
)
row(
    "train_num_workers_zero",
    nothing,
    "train",
    "config=tiny",
    "train.num_workers=0",
    "run.output_dir={out}",
    names=("train.num_workers",),
)
row(
    "train_data_root_is_a_file",
    a_file,
    "train",
    "config=tiny",
    "data.root={file}",
    "run.output_dir={out}",
    "run.storage_path={out}",
    names=("a_file",),
)
row(
    "train_data_root_is_a_device",
    nothing,
    "train",
    "config=tiny",
    "data.root=/dev/null",
    "run.output_dir={out}",
    "run.storage_path={out}",
    names=("/dev/null",),
)
row(
    "evaluate_label_id_infinite",
    files(_gt(subset="test", duration=10.0, annotations=[_ann(label_id=float("inf"))])),
    "evaluate",
    "--predictions",
    "{pred}",
    "--ground-truth",
    "{gt}",
    names=("gt.json", "video 'vx' annotation 0", "'label_id' inf"),
)
row(
    "evaluate_video_entry_not_an_object",
    files(json.dumps({"database": {**BASE_DB, "vx": [1, 2]}})),
    "evaluate",
    "--predictions",
    "{pred}",
    "--ground-truth",
    "{gt}",
    names=("gt.json", "video 'vx'", "not an object"),
)
row(
    "evaluate_duration_not_a_number",
    files(_gt(subset="test", duration="long", annotations=[_ann()])),
    "evaluate",
    "--predictions",
    "{pred}",
    "--ground-truth",
    "{gt}",
    names=("gt.json", "video 'vx'", "'duration' 'long'"),
)
row(
    "evaluate_label_id_huge_integer",
    files(_gt(subset="test", duration=10.0, annotations=[_ann(label_id=10**400)])),
    "evaluate",
    "--predictions",
    "{pred}",
    "--ground-truth",
    "{gt}",
    names=("gt.json", "video 'vx' annotation 0", "'label_id' 1000"),
)
row(
    "evaluate_results_entry_not_a_list",
    files(pred_text=json.dumps({"results": {"v0": 5}})),
    "evaluate",
    "--predictions",
    "{pred}",
    "--ground-truth",
    "{gt}",
    names=("pred.json",),
)
row(
    "prepare_annotations_deeply_nested",
    config_file("[" * 200_000),
    "prepare",
    "synth",
    "data.root={out}/ds",
    "--annotations",
    "{yaml}",
    "--quiet",
    names=("hostile.yaml",),
)

# class 5: one verdict across readers
row("inspect_non_utf8_video_id", _non_utf8_id, "inspect", "data.root={root}", status=1, names=("UTF-8",))


# ------------------------------------------------------------------------------------------- the test
def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def snapshot(top: Path, skip: tuple[Path, ...]) -> dict[str, tuple]:
    """Every entry under `top` (not under `skip`): its type, and size + sha256 for files, target for links.
    FIFOs and devices are never opened."""
    found: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        for name in dirnames + filenames:
            path = here / name
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                found[str(path)] = ("link", os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                found[str(path)] = ("file", st.st_size, _digest(path, st.st_size))
            else:
                found[str(path)] = (stat.S_IFMT(st.st_mode),)
    return found


def _digest(path: Path, size: int) -> str:
    if size > 64 << 20:  # the sparse bomb: its size and mtime stand for its content
        return str(os.stat(path).st_mtime_ns)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_command_has_rows():
    used = {r.command for r in ROWS.values()}
    assert used == set(COMMANDS), set(COMMANDS) - used


@pytest.mark.parametrize("name", list(ROWS))
def test_hostile_command(name, tmp_path):
    spec = ROWS[name]
    inputs, out, home, work, tmpdir = (tmp_path / d for d in ("in", "out", "home", "work", "tmp"))
    for d in (inputs, out, home, work, tmpdir):
        d.mkdir()
    names = {k: str(v) for k, v in spec.build(inputs).items()}
    if name == "evaluate_ground_truth_is_a_fifo":
        os.mkfifo(inputs / "fifo")
    names.update({"out": str(out), "in": str(inputs)})
    argv = [sys.executable, *COMMANDS[spec.command], *(a.format(**names) for a in spec.args)]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HOME": str(home),
        "TMPDIR": str(tmpdir),
        "XDG_CACHE_HOME": str(home / ".cache"),
    }
    before = snapshot(tmp_path, skip=(out, tmpdir))
    proc = subprocess.run(
        argv, cwd=work, env=env, capture_output=True, text=True, timeout=120, preexec_fn=_limit_memory
    )
    after = snapshot(tmp_path, skip=(out, tmpdir))
    stderr = proc.stderr.strip()
    assert proc.returncode == spec.status, f"exit {proc.returncode}, stderr:\n{stderr[-3000:]}"
    assert "Traceback" not in stderr, stderr[-3000:]
    assert len(stderr) <= MAX_STDERR, f"{len(stderr)} characters of stderr: {stderr[:500]}..."
    error = [line for line in stderr.splitlines() if "error: " in line]
    assert error, stderr
    for expected in spec.names:
        assert expected.format(**names) in stderr, f"{expected!r} not in: {stderr}"
    created = sorted(set(after) - set(before))
    assert not created, f"created outside the output folder: {created[:5]}"
    changed = sorted(k for k in before if before[k] != after.get(k))
    assert not changed, f"inputs changed or removed: {changed[:5]}"
