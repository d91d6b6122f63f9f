"""Plots write readable, non-empty PNGs."""

from __future__ import annotations

import numpy as np
import pytest

from clasp_dist.viz import confined_path, plot_ablation_bars, plot_timeline

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = open(path, "rb").read()
    assert data[:8] == PNG_SIGNATURE and len(data) > 5000


def test_timeline_png(tmp_path):
    steps = 120
    agreement = 0.5 + 0.4 * np.sin(np.linspace(0, 6, steps))
    anchors = np.zeros(steps, dtype=bool)
    anchors[[10, 40, 41, 90]] = True
    out = plot_timeline(
        tmp_path / "plots" / "v.png",
        "vid_001",
        40.0,
        gt_segments=[(2.0, 9.5, 3), (20.0, 30.0, 7), (25.0, 27.0, 3)],
        pred_segments=[(2.5, 9.0, 3, 0.9), (19.0, 31.0, 7, 0.4), (33.0, 35.0, 1, 0.05)],
        class_names=[f"class {i}" for i in range(10)],
        agreement=agreement,
        anchors=anchors,
        step_s=0.32,
        offset_s=0.48,
    )
    assert_png(out)


def test_timeline_without_curve_or_segments(tmp_path):
    assert_png(plot_timeline(tmp_path / "a.png", "v", 10.0, [], [], ["x"]))
    assert_png(plot_timeline(tmp_path / "b.png", "v", 10.0, [(1, 2, 0)], [], ["x"], anchors=[1, 2]))


def test_ablation_bars_png(tmp_path):
    out = plot_ablation_bars(
        tmp_path / "abl.png",
        ["base", "+MEAE+CSAI-g+ATP", "+CSAI-local", "full"],
        [30.1, 33.4, 34.0, 35.2],
        [0.4, 0.3, 0.5, 0.2],
    )
    assert_png(out)
    with pytest.raises(ValueError, match="differ in length"):
        plot_ablation_bars(tmp_path / "x.png", ["a"], [1.0, 2.0], [0.1])


@pytest.mark.parametrize("video_id", ["../../x", "/abs/olute", "..", "a/../../b", "", "a b;c", "ok_id-1.2"])
def test_output_names_from_data_stay_in_their_folder(tmp_path, video_id):
    out = tmp_path / "timelines"
    path = confined_path(out, video_id, ".png")
    assert path.parent == out.resolve() and path.name.endswith(".png") and not path.name.startswith(".")
    if video_id == "ok_id-1.2":
        assert path.name == "ok_id-1.2.png"  # safe ids keep their name
    assert_png(plot_timeline(path, video_id, 10.0, [], [], ["x"]))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [path]


def test_sanitised_names_do_not_collide(tmp_path):
    assert confined_path(tmp_path, "a/b", ".png") != confined_path(tmp_path, "a_b", ".png")
    assert confined_path(tmp_path, "a/b", ".png") != confined_path(tmp_path, "a?b", ".png")
