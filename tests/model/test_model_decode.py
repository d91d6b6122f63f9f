"""Segment decoding (docs/model.md) on hand-made CAS sequences."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from clasp_dist.config import DecodeConfig
from clasp_dist.inference.segments import (
    decode_outputs,
    find_runs,
    oic_scores,
    select_classes,
    soft_nms,
    steps_to_seconds,
    unique_segments,
)
from clasp_dist.model import ModelOutput

HI, LO = 8.0, -8.0
I3D = dict(step_s=0.32, offset_s=0.48)
ONEPEACE = dict(step_s=0.25, offset_s=0.5)


def make_output(cas: np.ndarray, video: np.ndarray) -> ModelOutput:
    """Same logits in both modalities, as base outputs."""
    cas_t, vid_t = torch.tensor(cas, dtype=torch.float32), torch.tensor(video, dtype=torch.float32)
    return ModelOutput(cas_a=cas_t, cas_v=cas_t.clone(), video_a=vid_t, video_v=vid_t.clone())


def run(cas, video, T_valid=None, duration=100.0, grid=I3D, cfg=None):
    cfg = cfg or DecodeConfig()
    B, T, _ = cas.shape
    mask = torch.arange(T)[None] < torch.tensor([T if T_valid is None else T_valid] * B)[:, None]
    return decode_outputs(
        make_output(cas, video),
        mask,
        [f"v{b}" for b in range(B)],
        grid["step_s"],
        grid["offset_s"],
        [duration] * B,
        cfg,
    )


def seconds(s, e, grid=I3D):
    return grid["offset_s"] + (s - 0.5) * grid["step_s"], grid["offset_s"] + (e + 0.5) * grid["step_s"]


def test_single_event():
    cas = np.full((1, 40, 3), LO)
    cas[0, 10:20, 2] = HI
    recs = run(cas, np.array([[LO, LO, HI]]))
    assert recs and all(r["label"] == 2 and r["video_id"] == "v0" for r in recs)
    top = recs[0]
    assert (top["t_start"], top["t_end"]) == pytest.approx(seconds(10, 19))
    assert top["score"] == max(r["score"] for r in recs)


def test_two_separated_events():
    cas = np.full((1, 60, 2), LO)
    cas[0, 5:10, 0] = HI
    cas[0, 30:45, 0] = HI
    recs = run(cas, np.array([[HI, LO]]))
    top2 = sorted((round(r["t_start"], 6), round(r["t_end"], 6)) for r in recs[:2])
    want = sorted(tuple(round(x, 6) for x in seconds(s, e)) for s, e in [(5, 9), (30, 44)])
    assert top2 == want
    assert {r["label"] for r in recs} == {0}


def test_full_length_event_clipped_to_duration():
    cas = np.full((1, 30, 2), HI)
    recs = run(cas, np.array([[HI, LO]]), duration=9.9)
    top = recs[0]
    assert top["label"] == 0
    assert top["t_start"] == pytest.approx(max(0.0, seconds(0, 29)[0]))
    assert top["t_end"] == pytest.approx(min(9.9, seconds(0, 29)[1]))
    # OIC of a full-length run: no outer steps -> inner mean + 0.2 * p
    assert top["score"] == pytest.approx(1 / (1 + math.exp(-HI)) + 0.2 / (1 + math.exp(-HI)), abs=1e-6)


def test_nothing_above_threshold():
    cas = np.full((2, 25, 4), -3.0)  # sigmoid(-3) = 0.047 < 0.1
    assert run(cas, np.full((2, 4), HI)) == []


def test_event_must_be_in_both_streams():
    cas_a = np.full((1, 20, 1), LO)
    cas_a[0, 4:9, 0] = HI
    cas_v = np.full((1, 20, 1), LO)
    cas_v[0, 12:16, 0] = HI
    out = ModelOutput(
        cas_a=torch.tensor(cas_a),
        cas_v=torch.tensor(cas_v),
        video_a=torch.full((1, 1), HI),
        video_v=torch.full((1, 1), HI),
    )
    assert decode_outputs(out, torch.ones(1, 20, dtype=torch.bool), ["x"], 0.32, 0.48, [30.0], DecodeConfig()) == []


def test_padding_never_decoded_and_refined_used():
    cas = np.full((1, 30, 1), LO)
    cas[0, 15:, 0] = HI  # event only in padded steps of the base output
    out = make_output(cas, np.array([[HI]]))
    ref = np.full((1, 30, 1), LO)
    ref[0, 2:6, 0] = HI
    ref[0, 20:, 0] = HI  # padded steps again
    out.cas_a_ref, out.cas_v_ref = torch.tensor(ref), torch.tensor(ref)
    out.video_a_ref = out.video_v_ref = torch.full((1, 1), HI)
    recs = decode_outputs(out, torch.arange(30)[None] < 12, ["x"], 0.32, 0.48, [60.0], DecodeConfig())
    assert recs[0]["t_start"] == pytest.approx(seconds(2, 5)[0]) and recs[0]["t_end"] == pytest.approx(seconds(2, 5)[1])
    assert all(r["t_end"] <= seconds(11, 11)[1] + 1e-9 for r in recs)


def test_class_selection_and_limits():
    p = np.array([0.05, 0.5, 0.3, 0.09, 0.2, 0.7, 0.15])
    assert select_classes(p, 0.1, 5).tolist() == [5, 1, 2, 4, 6]
    assert select_classes(p, 0.1, 2).tolist() == [5, 1]
    assert select_classes(np.array([0.01, 0.02]), 0.1, 5).tolist() == [1]
    rng = np.random.default_rng(0)
    cas = rng.normal(0, 3, size=(1, 200, 8))
    cfg = DecodeConfig(max_segments=7, max_classes=2)
    recs = run(cas, np.full((1, 8), HI), cfg=cfg)
    assert len(recs) == 7 and len({r["label"] for r in recs}) <= 2
    assert [r["score"] for r in recs] == sorted((r["score"] for r in recs), reverse=True)


def test_find_runs_and_oic():
    s, e = find_runs(np.array([1, 1, 0, 0, 1, 0, 1, 1, 1], dtype=bool))
    assert s.tolist() == [0, 4, 6] and e.tolist() == [1, 4, 8]
    sig = np.array([0.0, 0.2, 0.9, 0.8, 0.9, 0.7, 0.1, 0.0])
    # run 2..5 (length 4): margin int(4*0.25)=1 each side -> outer steps 1 and 6
    got = oic_scores(sig, np.array([2]), np.array([5]), 0.25)
    assert got[0] == pytest.approx(np.mean(sig[2:6]) - np.mean([sig[1], sig[6]]))
    # margin 0.5 of a 4-step run = 2 steps each side, clipped to the valid range at the edges
    got = oic_scores(sig, np.array([0, 6]), np.array([3, 7]), 0.5)
    assert got[0] == pytest.approx(np.mean(sig[0:4]) - np.mean(sig[4:6]))  # left margin clipped away
    assert got[1] == pytest.approx(np.mean(sig[6:8]) - np.mean(sig[5:6]))  # right clipped


def _brute_soft_nms(segs, scores, sigma):
    """Plain-Python reference: list of (index, score) in pick order."""
    scores = list(scores)
    alive = list(range(len(segs)))
    picked = []
    while alive:
        best = max(alive, key=lambda i: (scores[i], -i))
        picked.append((best, scores[best]))
        alive.remove(best)
        for i in alive:
            a, b = segs[best], segs[i]
            inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
            union = (a[1] - a[0]) + (b[1] - b[0]) - inter
            iou = inter / union if union > 0 else 0.0
            scores[i] *= math.exp(-iou * iou / sigma)
    return picked


@pytest.mark.parametrize("seed", range(5))
def test_soft_nms_matches_reference(seed):
    rnd = random.Random(seed)
    segs = []
    for _ in range(30):
        s = rnd.uniform(0, 50)
        segs.append((s, s + rnd.uniform(0.3, 15)))
    scores = [rnd.uniform(0, 1) for _ in segs]
    st, en = np.array([s for s, _ in segs]), np.array([e for _, e in segs])
    keep, kept = soft_nms(st, en, np.array(scores), sigma=0.4)
    ref = _brute_soft_nms(segs, scores, 0.4)
    assert keep.tolist() == [i for i, _ in ref]
    np.testing.assert_allclose(kept, [x for _, x in ref], rtol=1e-9)
    keep5, _ = soft_nms(st, en, np.array(scores), sigma=0.4, max_keep=5)
    assert keep5.tolist() == keep[:5].tolist()


def test_soft_nms_decays_duplicates():
    keep, kept = soft_nms(np.array([0.0, 0.0, 10.0]), np.array([5.0, 5.0, 12.0]), np.array([0.9, 0.8, 0.5]), 0.4)
    assert keep.tolist() == [0, 2, 1]
    assert kept[2] == pytest.approx(0.8 * math.exp(-1 / 0.4))


@pytest.mark.parametrize(
    "grid,run_,want",
    [
        (I3D, (0, 0), (0.32, 0.64)),
        (I3D, (10, 19), (0.48 + 9.5 * 0.32, 0.48 + 19.5 * 0.32)),
        (ONEPEACE, (0, 0), (0.375, 0.625)),
        (ONEPEACE, (2, 5), (0.875, 1.875)),
    ],
)
def test_steps_to_seconds_grids(grid, run_, want):
    s, e = steps_to_seconds([run_[0]], [run_[1]], grid["step_s"], grid["offset_s"], 100.0)
    assert (s[0], e[0]) == pytest.approx(want)


def test_steps_to_seconds_clips():
    s, e = steps_to_seconds([0, 30], [40, 40], 0.32, 0.48, 10.0)
    assert s.tolist()[0] == pytest.approx(0.32) and e.tolist() == [10.0, 10.0]
    s, e = steps_to_seconds([0], [3], 0.25, 0.0, 10.0)  # would start at -0.125
    assert s[0] == 0.0 and e[0] == pytest.approx(0.875)


def test_onepeace_grid_end_to_end():
    cas = np.full((1, 80, 2), LO)
    cas[0, 8:24, 1] = HI
    recs = run(cas, np.array([[LO, HI]]), grid=ONEPEACE, duration=20.0)
    assert recs[0]["label"] == 1
    assert (recs[0]["t_start"], recs[0]["t_end"]) == pytest.approx((0.5 + 7.5 * 0.25, 0.5 + 23.5 * 0.25))


@pytest.mark.parametrize("length", [2, 3, 5, 6, 7, 9, 13])
def test_oic_margins_symmetric_under_mirroring(length):
    """A run and its mirror image score the same: both margins are floor(0.25 L) (at least 1) steps."""
    rng = np.random.default_rng(length)
    sig = rng.uniform(0, 1, 40)
    s, e = np.array([11]), np.array([11 + length - 1])
    mirrored = oic_scores(sig[::-1].copy(), 39 - e, 39 - s, 0.25)
    assert oic_scores(sig, s, e, 0.25)[0] == pytest.approx(mirrored[0], abs=1e-12)
    m = max(1, int(0.25 * length))
    want = (
        sig[11 : 12 + length - 1].mean() - np.concatenate([sig[11 - m : 11], sig[11 + length : 11 + length + m]]).mean()
    )
    assert oic_scores(sig, s, e, 0.25)[0] == pytest.approx(want, abs=1e-12)


def test_exact_duplicate_proposals_removed_before_nms():
    """A flat-topped event crosses every level at the same steps: one proposal, not nine decayed copies."""
    cas = np.full((1, 40, 1), LO)
    cas[0, 10:20, 0] = HI
    recs = run(cas, np.array([[HI]]))
    spans = [(r["t_start"], r["t_end"]) for r in recs]
    assert len(spans) == len(set(spans)) == 1
    t1, t2, sc = unique_segments(
        np.array([1.0, 1.0, 2.0, 1.0]), np.array([3.0, 3.0, 3.0, 4.0]), np.array([0.2, 0.7, 0.5, 0.1])
    )
    assert sorted(zip(t1.tolist(), t2.tolist(), sc.tolist())) == [(1.0, 3.0, 0.7), (1.0, 4.0, 0.1), (2.0, 3.0, 0.5)]


def test_relative_thresholds_follow_the_signal_range():
    """loc_threshold_mode=relative cuts each class signal at fractions of its own range: a weak event that never
    reaches the absolute 0.1 floor still becomes a proposal."""
    cas = np.full((1, 40, 1), -4.0)  # sigmoid = 0.018
    cas[0, 10:20, 0] = -2.6  # sigmoid = 0.069 < 0.1
    assert run(cas, np.array([[HI]])) == []
    recs = run(cas, np.array([[HI]]), cfg=DecodeConfig(loc_threshold_mode="relative"))
    assert (recs[0]["t_start"], recs[0]["t_end"]) == pytest.approx(seconds(10, 19))


def test_video_score_from_base_heads():
    """decode.video_score=base takes class selection and the OIC bonus from the base heads' video logits."""
    cas = np.full((1, 30, 2), LO)
    cas[0, 5:15, :] = HI
    out = make_output(cas, np.array([[HI, LO]]))  # base: class 0
    out.cas_a_ref, out.cas_v_ref = torch.tensor(cas), torch.tensor(cas)
    out.video_a_ref = out.video_v_ref = torch.tensor([[LO, HI]])  # refined: class 1
    mask = torch.ones(1, 30, dtype=torch.bool)
    final = decode_outputs(out, mask, ["x"], 0.32, 0.48, [30.0], DecodeConfig(max_classes=1))
    base = decode_outputs(out, mask, ["x"], 0.32, 0.48, [30.0], DecodeConfig(max_classes=1, video_score="base"))
    assert {r["label"] for r in final} == {1} and {r["label"] for r in base} == {0}
