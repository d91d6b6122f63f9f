"""The semi-synthetic generator: determinism, fidelity to the annotations, distractors, difficulty."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from clasp_dist.config import DataConfig
from clasp_dist.data import generate_dataset, read_manifest
from clasp_dist.data.annotations import load_annotations
from clasp_dist.data.roots import ensure_dataset
from clasp_dist.data.split_reader import iter_local_samples
from clasp_dist.data.synthetic import PROFILES, get_profile, make_class_bank, synthesize_video


def _shas(root) -> list[str]:
    m = read_manifest(str(root))
    return [s.sha256 for split in m.splits.values() for s in split.shards]


def test_same_seed_same_bytes_whatever_the_worker_count(tmp_path, tiny_root):
    generate_dataset(str(tmp_path / "w2"), "tiny", seed=0, workers=2, progress=False)
    assert _shas(tmp_path / "w2") == _shas(tiny_root)
    for name in ("train-000000.tar", "test-000001.tar"):
        assert (tmp_path / "w2" / name).read_bytes() == (read_bytes(tiny_root, name))
    generate_dataset(str(tmp_path / "s1"), "tiny", seed=1, workers=1, progress=False)
    assert set(_shas(tmp_path / "s1")).isdisjoint(_shas(tiny_root))


def read_bytes(root, name):
    from pathlib import Path

    return (Path(root) / name).read_bytes()


def test_profiles():
    assert (PROFILES["tiny"].visual_dim, PROFILES["tiny"].audio_dim, PROFILES["tiny"].grid.step_s) == (32, 16, 0.32)
    assert (PROFILES["i3d"].visual_dim, PROFILES["i3d"].audio_dim, PROFILES["i3d"].grid.offset_s) == (2048, 128, 0.48)
    assert (PROFILES["onepeace"].visual_dim, PROFILES["onepeace"].grid.step_s, PROFILES["onepeace"].grid.offset_s) == (
        1536,
        0.25,
        0.5,
    )
    assert PROFILES["small"].limit_per_split == {"train": 600, "validation": 200, "test": 200}
    assert PROFILES["i3d"].limit_per_split == {}


def test_exactly_the_annotated_events(tiny_root):
    ann = load_annotations()
    manifest = read_manifest(tiny_root)
    assert manifest.classes == list(ann.classes) and len(manifest.classes) == 100
    grid = manifest.grid
    for split in ("train", "validation", "test"):
        expected = ann.splits[split][: PROFILES["tiny"].limit_per_split[split]]
        rows = list(iter_local_samples(tiny_root, split, include_segments=split != "train"))
        assert [r["video_id"] for r in rows] == [v.video_id for v in expected]
        for row, video in zip(rows, expected):
            assert row["labels"].tolist() == list(video.labels)
            assert row["duration"] == video.duration
            assert row["num_steps"] == grid.num_steps(video.duration)
            if split == "train":
                assert "segments" not in row
            else:
                assert [tuple(s) for s in json.loads(row["segments"])] == [tuple(s) for s in video.segments]


def test_duplicate_annotations_dropped(tmp_path):
    db = {
        "database": {
            "vidA": {
                "subset": "validation",
                "duration": 12.0,
                "annotations": [
                    {"segment": [1.0, 4.0], "label": "x", "label_id": 0},
                    {"segment": [1.0004, 3.9996], "label": "x", "label_id": 0},  # duplicate within 1e-3 s
                    {"segment": [1.0, 4.0], "label": "y", "label_id": 1},  # same span, other class: kept
                    {"segment": [1.01, 4.0], "label": "x", "label_id": 0},
                ],
            },  # 10 ms apart: kept
            "vidB": {
                "subset": "train",
                "duration": 20.0,
                "annotations": [{"segment": [2.0, 5.0], "label": "y", "label_id": 1}],
            },
        }
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(db))
    ann = load_annotations(path)
    assert ann.duplicates_dropped == 1
    assert ann.splits["validation"][0].segments == ((1.0, 4.0, 0), (1.0, 4.0, 1), (1.01, 4.0, 0))
    root = generate_dataset(str(tmp_path / "ds"), "tiny", annotations=str(path), workers=1, progress=False)
    (row,) = iter_local_samples(root, "validation", include_segments=True)
    assert json.loads(row["segments"]) == [[1.0, 4.0, 0], [1.0, 4.0, 1], [1.01, 4.0, 0]]


def _projection(x: np.ndarray, proto: np.ndarray) -> np.ndarray:
    return x @ proto / np.sqrt(proto.size)  # [T]


def test_distractors_are_modality_only_and_never_labels():
    clean = dataclasses.replace(get_profile("tiny"), noise_std=0.05, scene_std=0.0, jitter_s=0.0)
    bank = make_class_bank(clean, 100, 0)
    videos = load_annotations().splits["validation"][:60]
    kinds, pairs = set(), []
    for video in videos:
        visual, audio, presences = synthesize_video(video, clean, bank, seed=0)
        assert [(p.visual[0], p.visual[1], p.cls) for p in presences if p.kind == "event"] == list(video.segments)
        centres = clean.grid.centres(visual.shape[0])
        for p in presences:
            if p.kind == "event":
                continue
            kinds.add(p.kind)
            assert (p.visual is None) != (p.audio is None)  # one stream only
            assert (p.cls in video.labels) == (p.kind != "absent_class")
            span = p.visual or p.audio
            inside = (centres > span[0] + 0.5) & (centres < span[1] - 0.5)
            others = [(s, e) for s, e, c in video.segments if c == p.cls]
            if not inside.any() or any(s < span[1] and e > span[0] for s, e in others):
                continue
            on, off = (visual, audio) if p.visual else (audio, visual)
            protos = (bank.visual, bank.audio) if p.visual else (bank.audio, bank.visual)
            pairs.append(
                (_projection(on[inside], protos[0][p.cls]).mean(), _projection(off[inside], protos[1][p.cls]).mean())
            )
    on, off = np.array(pairs).T
    assert kinds == {"offscreen_sound", "silent_object", "absent_class"} and len(pairs) >= 20
    assert on.min() > 4 * clean.noise_std  # present in its stream, well above the noise
    # ... and absent from the other stream, up to a sibling class's event there (families correlate)
    assert np.median(np.abs(off)) < 0.15 * np.median(on) and np.mean(on > 2 * np.abs(off)) > 0.8


def _ap(score: np.ndarray, positive: np.ndarray) -> float:
    order = np.argsort(-score)
    hits = positive[order]
    precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float((precision * hits).sum() / max(1, hits.sum()))


def _oracle_ap(name: str, videos: int = 60) -> dict[str, float]:
    """Step-level AP of an oracle that knows the prototypes and scores each (step, class) by projection."""
    profile = get_profile(name)
    bank = make_class_bank(profile, 100, 0)
    scores, truth = {"visual": [], "audio": [], "sum": [], "agree": []}, []
    for video in load_annotations().splits["validation"][:videos]:
        visual, audio, _ = synthesize_video(video, profile, bank, seed=0)
        zv = visual @ bank.visual.T / np.sqrt(profile.visual_dim)  # [T, C]
        za = audio @ bank.audio.T / np.sqrt(profile.audio_dim)  # [T, C]
        centres = profile.grid.centres(visual.shape[0])
        gt = np.zeros(zv.shape, bool)
        for s, e, c in video.segments:
            gt[(centres >= s) & (centres <= e), c] = True
        for key, z in (("visual", zv), ("audio", za), ("sum", zv + za), ("agree", np.minimum(zv, za))):
            scores[key].append(z.ravel())
        truth.append(gt.ravel())
    truth = np.concatenate(truth)
    return {key: _ap(np.concatenate(s), truth) for key, s in scores.items()}


def test_agreement_is_necessary():
    """With distractors, one stream alone is far worse than requiring both (min), and summing the streams is worse too."""
    ap = _oracle_ap("small")
    assert ap["agree"] > ap["sum"] + 0.02, ap
    assert ap["agree"] > max(ap["visual"], ap["audio"]) + 0.15, ap


@pytest.mark.parametrize("name", ["distract", "scarce"])
def test_harder_profiles_are_harder_and_still_need_agreement(name):
    """The harder regimes: same features and splits as `small` (scarce: half the training videos), a lower
    oracle ceiling, and agreement still the best oracle."""
    small, hard = get_profile("small"), get_profile(name)
    assert (hard.visual_dim, hard.audio_dim, hard.grid) == (small.visual_dim, small.audio_dim, small.grid)
    assert hard.limit_per_split["test"] == small.limit_per_split["test"]
    assert hard.limit_per_split["train"] <= small.limit_per_split["train"]
    ap, ap_small = _oracle_ap(name), _oracle_ap("small")
    assert ap["agree"] < ap_small["agree"] - 0.05, (ap, ap_small)
    assert ap["agree"] > max(ap["visual"], ap["audio"]) + 0.05, ap


def test_ensure_dataset_generates_once_then_reuses(tmp_path):
    cfg = DataConfig(synth_profile="tiny", synth_limit_per_split=4, cache_dir=str(tmp_path))
    root = ensure_dataset(cfg, workers=1, progress=False)
    stamp = (tmp_path / root.split("/")[-1] / "manifest.json").stat().st_mtime_ns
    assert ensure_dataset(cfg, workers=1, progress=False) == root
    assert (tmp_path / root.split("/")[-1] / "manifest.json").stat().st_mtime_ns == stamp
    assert read_manifest(root).splits["validation"].videos == 4
    other = ensure_dataset(
        DataConfig(synth_profile="tiny", synth_limit_per_split=4, synth_seed=3, cache_dir=str(tmp_path)),
        workers=1,
        progress=False,
    )
    assert other != root
    assert ensure_dataset(DataConfig(root=root)) == root  # data.root, as it is
    assert ensure_dataset(cfg, root="s3://b/x") == "s3://b/x"  # an explicit root (evaluate --data) wins


def test_concurrent_first_calls_generate_the_cached_dataset_once(tmp_path, caplog):
    """Two callers at once (the file lock is per open file, so threads contend as processes do): one
    generates, the other waits and reuses it."""
    import threading

    cfg = DataConfig(synth_profile="tiny", synth_limit_per_split=2, cache_dir=str(tmp_path / "cache"))
    roots: list[str] = []
    callers = [
        threading.Thread(target=lambda: roots.append(ensure_dataset(cfg, workers=1, progress=False))) for _ in range(2)
    ]
    with caplog.at_level("INFO", logger="clasp_dist.data.roots"):
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
    assert len(roots) == 2 and roots[0] == roots[1]
    assert sum("generating the semi-synthetic" in r.getMessage() for r in caplog.records) == 1, caplog.text


def _small_fingerprint() -> dict[str, str]:
    """sha256 of the `small` profile's identity (manifest params), class bank and first 4 videos per split."""
    import hashlib

    from clasp_dist.data.synthetic import resolve_limits, synth_params

    p = get_profile("small")
    params = synth_params(p, 0, resolve_limits(p, None), p.distractor_rate, None)
    bank = make_class_bank(p, 100, 0)
    h_bank = hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in (bank.visual, bank.audio, bank.family)))
    h_vid = hashlib.sha256()
    ann = load_annotations()
    for split in ("train", "validation", "test"):
        for video in ann.splits[split][:4]:
            visual, audio, presences = synthesize_video(video, p, bank, seed=0)
            h_vid.update(visual.astype(np.float16).tobytes() + audio.astype(np.float16).tobytes())
            h_vid.update(repr([(q.cls, q.visual, q.audio, q.kind) for q in presences]).encode())
    return {
        "params": hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest(),
        "bank": h_bank.hexdigest(),
        "videos": h_vid.hexdigest(),
    }


def test_small_profile_is_pinned():
    """`small` is the reference regime: harder profiles are new profiles, `small` stays bit-identical."""
    assert _small_fingerprint() == {
        "params": "35522fa05a9bc39ebb02cb559f08a38cf4e5316479f01e9c19506f9171cd57c8",
        "bank": "af0c942247d0899201b5a77af9952cf111f355b9a8e518441c300a8e2579b078",
        "videos": "9961a9d909f42046e4007d0a504ff85f1d063b9fdd247af02d8ac5ad4d504940",
    }


@pytest.mark.slow
def test_generating_beside_ray_prints_no_stack_dumps(tmp_path):
    """The writer's forked processes inherit the failure-signal handlers of Ray's core worker: stopping them with
    SIGTERM printed `*** SIGTERM received ... PC: @ ...` dumps into every first `clasp train`. They exit on their
    own now."""
    import subprocess
    import sys

    script = (
        "import ray; ray.init(num_cpus=1, include_dashboard=False)\n"
        "from clasp_dist.data import generate_dataset\n"
        f"generate_dataset({str(tmp_path / 'data')!r}, 'tiny', seed=0, workers=2, progress=False)\n"
        "ray.shutdown()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "SIGTERM" not in done.stderr and "PC: @" not in done.stderr, done.stderr[-2000:]
    assert read_manifest(str(tmp_path / "data")).splits["train"].videos > 0
