"""The metric against hand-computed cases and against the brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clasp_dist.evaluation.metric import (
    ANET_TIOU,
    UNAV100_TIOU,
    EvaluationInputError,
    Segments,
    evaluate_detection,
    format_threshold,
    parse_tiou_thresholds,
    segment_tiou,
)

from . import reference
from .helpers import NAMES, gt_segments, pred_segments, random_case


def evaluate(gt_rows, pred_rows, thresholds=(0.5,), videos=None, **kw):
    return evaluate_detection(gt_segments(gt_rows, videos), pred_segments(pred_rows), thresholds, **kw)


# ------------------------------------------------------------------ hand-computed cases


def test_precision_recall_curve_interpolated():
    gt = [("a", 0, 0, 10), ("a", 0, 20, 30)]
    preds = [("a", 0, 0, 10, 0.9), ("a", 0, 40, 50, 0.8), ("a", 0, 20, 30, 0.7)]
    # precision 1, 1/2, 2/3; recall 1/2, 1/2, 1 -> 0.5 * 1 + 0.5 * 2/3
    res = evaluate(gt, preds)
    assert res.ap[0, 0] == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-12)
    assert math.isnan(res.ap[0, 1])  # no ground truth of class 1
    assert res.mAP[0] == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-12)


def test_score_ties_follow_input_order_when_stable():
    gt = [("a", 0, 0, 10)]
    fp, tp = ("a", 0, 50, 60, 0.5), ("a", 0, 0, 10, 0.5)
    assert evaluate(gt, [fp, tp]).mAP[0] == pytest.approx(0.5)  # FP ranked first: precision 0, 1/2
    assert evaluate(gt, [tp, fp]).mAP[0] == pytest.approx(1.0)


def test_score_ties_official_replays_numpy_argsort():
    gt = [("a", 0, 0, 10)]
    preds = [("a", 0, 50, 60, 0.5), ("a", 0, 0, 10, 0.5), ("a", 0, 30, 40, 0.5)]
    order = list(np.argsort(np.array([0.5, 0.5, 0.5]))[::-1])  # what the official script does here
    rank_of_tp = order.index(1)
    res = evaluate(gt, preds, tie_break="official")
    assert res.mAP[0] == pytest.approx(1.0 / (rank_of_tp + 1))


def test_duplicate_predictions_second_is_false_positive():
    gt = [("a", 0, 0, 10), ("a", 0, 20, 30)]
    preds = [("a", 0, 0, 10, 0.9), ("a", 0, 0, 10, 0.8), ("a", 0, 20, 30, 0.7)]
    res = evaluate(gt, preds)
    assert res.mAP[0] == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-12)


def test_tiou_exactly_at_threshold_matches():
    gt = [("a", 0, 0, 4)]
    preds = [("a", 0, 0, 2, 1.0)]  # tIoU exactly 0.5
    res = evaluate(gt, preds, thresholds=(0.5, 0.5000001))
    assert res.mAP.tolist() == [1.0, 0.0]


def test_protocol_thresholds_are_the_official_linspace_floats():
    # tIoU 3/10 is the double nearest 0.3, below linspace's 0.30000000000000004: no match there,
    # exactly as the official np.linspace(0.1, 0.9, 9) thresholds behave; a typed 0.3 matches.
    gt = [("a", 0, 0, 10)]
    preds = [("a", 0, 0, 3, 1.0)]
    assert UNAV100_TIOU[2] == np.linspace(0.1, 0.9, 9)[2] != 0.3
    res = evaluate(gt, preds, thresholds=UNAV100_TIOU)
    assert res.mAP[:2].tolist() == [1.0, 1.0] and res.mAP[2] == 0.0
    assert evaluate(gt, preds, thresholds=(0.3,)).mAP[0] == 1.0


def test_greedy_matching_is_not_optimal_assignment():
    gt = [("a", 0, 0, 10), ("a", 0, 8, 18)]
    # p1 overlaps both (tIoU 5/14 with the first, 6/13 with the second) and takes the second;
    # p2 only overlaps the second (tIoU 0.8) and becomes a false positive at 0.3 and 0.4.
    preds = [("a", 0, 5, 14, 0.9), ("a", 0, 10, 18, 0.8)]
    res = evaluate(gt, preds, thresholds=(0.3, 0.4, 0.5))
    assert res.mAP.tolist() == pytest.approx([0.5, 0.5, 0.25], abs=1e-12)


def test_greedy_skips_matched_ground_truth_for_next_best():
    gt = [("a", 0, 0, 10), ("a", 0, 2, 12)]
    preds = [("a", 0, 0, 10, 0.9), ("a", 0, 0, 10, 0.8)]  # second takes the other segment (tIoU 8/12)
    res = evaluate(gt, preds, thresholds=(0.5, 0.7))
    assert res.mAP.tolist() == pytest.approx([1.0, 0.5], abs=1e-12)


def test_class_without_predictions_scores_zero_and_enters_mean():
    gt = [("a", 0, 0, 10), ("a", 1, 0, 10)]
    res = evaluate(gt, [("a", 0, 0, 10, 1.0)])
    assert res.ap[0, :2].tolist() == [1.0, 0.0]
    assert res.mAP[0] == 0.5


def test_no_predictions_at_all():
    gt = [("a", 0, 0, 10), ("b", 2, 5, 7)]
    res = evaluate(gt, [], thresholds=UNAV100_TIOU)
    assert np.all(res.mAP == 0) and res.average == 0
    assert np.all(res.recall["1x"] == 0) and np.all(res.recall["5x"] == 0)
    assert res.warnings["videos_without_predictions"] == 2


def test_prediction_on_video_without_that_class_is_false_positive():
    gt = [("a", 0, 0, 10), ("b", 1, 0, 10)]
    preds = [("b", 0, 0, 10, 0.9), ("a", 0, 0, 10, 0.5)]
    res = evaluate(gt, preds)
    assert res.ap[0, 0] == pytest.approx(0.5)


def test_predictions_of_class_without_ground_truth_are_ignored_and_counted():
    gt = [("a", 0, 0, 10)]
    res = evaluate(gt, [("a", 3, 0, 10, 0.99), ("a", 0, 0, 10, 0.5)])
    assert res.mAP[0] == 1.0
    assert res.warnings["class_without_gt"] == 1
    assert res.classes_with_gt.tolist() == [True, False, False, False]


def test_prediction_on_unknown_video_is_a_false_positive_and_counted():
    gt = [("a", 0, 0, 10)]
    preds = [("zzz", 0, 0, 10, 0.99), ("a", 0, 0, 10, 0.5)]
    res = evaluate(gt, preds)
    assert res.mAP[0] == pytest.approx(0.5) and res.warnings["unknown_video"] == 1  # official: get_group fails
    opt_in = evaluate(gt, preds, ignore_unknown_videos=True)
    assert opt_in.mAP[0] == 1.0 and opt_in.warnings["unknown_video"] == 1


def test_issue_12_worked_case_official_number():
    """Hand-checked: dog AP 0.25 (FP 'zzz' 0.98 ranks above the TP 0.90 on a; b's dog is missed ->
    precision 0, 1/2, recall 0, 1/2: 0.5 * 0.5), car AP 0.5 (FP on b first, then TP), mAP 0.375."""
    names = ("dog", "car")
    gt = gt_segments([("a", 0, 0, 10), ("a", 1, 20, 30), ("b", 0, 5, 15)], names=names)
    preds = pred_segments(
        [("b", 1, 20, 30, 0.99), ("zzz", 0, 0, 10, 0.98), ("a", 0, 0, 10, 0.90), ("a", 1, 20, 30, 0.50)]
    )
    res = evaluate_detection(gt, preds, UNAV100_TIOU)
    np.testing.assert_allclose(res.ap, [[0.25, 0.5]] * 9, atol=1e-12)
    np.testing.assert_allclose(res.mAP, [0.375] * 9, atol=1e-12)
    assert res.warnings["unknown_video"] == 1
    ref = reference.evaluate(
        [("a", 0, 0, 10), ("a", 1, 20, 30), ("b", 0, 5, 15)],
        [("b", 1, 20, 30, 0.99), ("zzz", 0, 0, 10, 0.98), ("a", 0, 0, 10, 0.90), ("a", 1, 20, 30, 0.50)],
        UNAV100_TIOU,
    )
    assert ref["mAP"] == pytest.approx([0.375] * 9, abs=1e-12)


def test_videos_without_annotations_are_part_of_the_split():
    gt = [("a", 0, 0, 10)]
    res = evaluate(gt, [("empty", 0, 0, 10, 0.99), ("a", 0, 0, 10, 0.5)], videos=["a", "empty"])
    assert res.mAP[0] == pytest.approx(0.5)  # a false positive on a known video, not ignored
    assert res.warnings["unknown_video"] == 0


def test_no_cap_by_default_and_cap_is_opt_in():
    gt = [("a", 0, 0, 10)]
    junk = [("a", 0, 50 + i, 51 + i, 0.5 + i * 1e-3) for i in range(100)]
    res = evaluate(gt, junk + [("a", 0, 0, 10, 0.1)])
    assert res.mAP[0] == pytest.approx(1 / 101) and res.warnings["predictions_over_cap"] == 0
    assert res.num_predictions == 101
    capped = evaluate(gt, junk + [("a", 0, 0, 10, 0.1)], max_per_video=100)
    assert capped.mAP[0] == 0.0 and capped.warnings["predictions_over_cap"] == 1


def test_topkx_recall_counts_ground_truth_hit_by_top_k_times_n():
    gt = [("a", 0, 0, 10), ("a", 0, 20, 30)]
    preds = [("a", 0, 0, 10, 0.9), ("a", 0, 40, 50, 0.8), ("a", 0, 20, 30, 0.7)]
    res = evaluate(gt, preds)
    assert res.recall["1x"][0] == pytest.approx(0.5)  # top 2 hit one of two
    assert res.recall["5x"][0] == pytest.approx(1.0)


def test_topkx_recall_is_not_one_to_one():
    gt = [("a", 0, 0, 10), ("a", 0, 1, 11)]
    preds = [("a", 0, 0, 10, 0.9)]  # one prediction covers both at 0.5
    res = evaluate(gt, preds)
    assert res.recall["1x"][0] == 1.0
    assert res.mAP[0] == pytest.approx(0.5)


def test_video_ids_restrict_the_evaluation():
    gt = [("a", 0, 0, 10), ("b", 0, 0, 10)]
    preds = [("a", 0, 0, 10, 0.9)]
    assert evaluate(gt, preds).mAP[0] == pytest.approx(0.5)
    res = evaluate(gt, preds, video_ids=["a"])
    assert res.mAP[0] == 1.0 and res.num_videos == 1
    with pytest.raises(EvaluationInputError, match="not in the ground truth"):
        evaluate(gt, preds, video_ids=["a", "nope"])


def test_zero_length_segments():
    assert segment_tiou(5.0, 5.0, 5.0, 5.0) == 1.0
    assert segment_tiou(5.0, 5.0, 6.0, 6.0) == 0.0
    assert segment_tiou(5.0, 5.0, 0.0, 10.0) == 0.0
    assert segment_tiou(0.0, 2.0, 0.0, 4.0) == 0.5


# ------------------------------------------------------------------ input checks


@pytest.mark.parametrize(
    "field,row,pattern",
    [
        ("score", ("vid7", 0, 0, 10, float("nan")), "video 'vid7'.*score is nan"),
        ("t_end", ("vid7", 0, 0, float("inf"), 0.5), "video 'vid7'.*t_end is inf"),
        ("t_start", ("vid7", 0, float("-inf"), 3, 0.5), "video 'vid7'.*t_start is -inf"),
        ("order", ("vid7", 0, 5, 4, 0.5), "segment 1 of video 'vid7'.*t_end 4.0 < t_start 5.0"),
    ],
)
def test_invalid_predictions_are_named(field, row, pattern):
    with pytest.raises(EvaluationInputError, match=pattern):
        pred_segments([("a", 0, 0, 1, 0.1), row])


def test_label_outside_class_list_is_ignored_and_counted_negative_is_an_error():
    res = evaluate([("a", 0, 0, 10)], [("a", 9, 0, 10, 0.9), ("a", 0, 0, 10, 0.5)])
    assert res.mAP[0] == 1.0 and res.warnings["class_without_gt"] == 1
    with pytest.raises(EvaluationInputError, match="label -1 is not a class id"):
        evaluate([("a", 0, 0, 10)], [("a", -1, 0, 10, 0.5)])
    named = Segments.from_records([dict(video_id="a", label=7, t_start=0, t_end=10, score=0.9)], class_names=NAMES)
    res = evaluate_detection(gt_segments([("a", 0, 0, 10)]), named, (0.5,))  # from Python with a class list, too
    assert res.warnings["class_without_gt"] == 1 and res.mAP[0] == 0.0
    with pytest.raises(EvaluationInputError, match="ground-truth segment 0 of video 'a': label 9"):
        evaluate([("a", 9, 0, 10)], [])


def test_class_list_mismatch_is_an_error():
    gt = gt_segments([("a", 0, 0, 10)])
    preds = Segments.from_records([dict(video_id="a", label=0, t_start=0, t_end=1, score=1)], class_names=("x",))
    with pytest.raises(EvaluationInputError, match="different class lists"):
        evaluate_detection(gt, preds, (0.5,))


def test_ground_truth_without_segments_is_an_error():
    with pytest.raises(EvaluationInputError, match="nothing to score"):
        evaluate([], [], videos=["a"])


# ------------------------------------------------------------------ thresholds


def test_parse_tiou_ranges_are_inclusive_and_official():
    assert parse_tiou_thresholds("0.5:0.95:0.05") == ANET_TIOU and len(ANET_TIOU) == 10
    assert parse_tiou_thresholds("0.1:0.9:0.1") == UNAV100_TIOU and len(UNAV100_TIOU) == 9
    assert np.array_equal(ANET_TIOU, np.linspace(0.5, 0.95, 10))
    assert parse_tiou_thresholds("0.3, 0.5,0.7") == (0.3, 0.5, 0.7)
    assert parse_tiou_thresholds("0.5") == (0.5,)
    assert [format_threshold(t) for t in UNAV100_TIOU][2] == "0.3"
    assert format_threshold(ANET_TIOU[1]) == "0.55"


@pytest.mark.parametrize("text", ["0.1:0.9", "0.9:0.1:0.1", "a,b", "0.1:0.95:0.1", "1.5", "", "0.1:0.9:0"])
def test_parse_tiou_rejects_bad_specs(text):
    with pytest.raises(EvaluationInputError):
        parse_tiou_thresholds(text)


# ------------------------------------------------------------------ brute force on random cases


def _compare(seed, on_grid, tie_break, cap, ignore_unknown_videos=False):
    videos, gt, preds = random_case(seed, on_grid=on_grid)
    if not gt:
        return False
    res = evaluate_detection(
        gt_segments(gt, videos),
        pred_segments(preds),
        UNAV100_TIOU,
        max_per_video=cap,
        tie_break=tie_break,
        ignore_unknown_videos=ignore_unknown_videos,
    )
    ref = reference.evaluate(
        gt,
        preds,
        UNAV100_TIOU,
        cap=cap,
        tie_break=tie_break,
        split_videos=videos,
        ignore_unknown_videos=ignore_unknown_videos,
    )
    assert_matches_reference(res, ref)
    return True


def assert_matches_reference(
    res, ref, label_of_class=None, counts=("unknown_video", "predictions_over_cap", "class_without_gt")
):
    """Same mAP, average, per-class AP, Recall@kx and counted warnings as the official reference."""
    np.testing.assert_allclose(res.mAP, ref["mAP"], atol=1e-9, rtol=0)
    assert res.average == pytest.approx(ref["average"], abs=1e-9)
    ids = label_of_class if label_of_class is not None else list(range(res.ap.shape[1]))
    ref_ap = np.array([ref["ap"].get(i, [np.nan] * len(res.mAP)) for i in ids]).T  # [T, C]
    np.testing.assert_allclose(res.ap, ref_ap, atol=1e-9, rtol=0)
    for k in ("1x", "5x"):
        np.testing.assert_allclose(res.recall[k], ref["recall"][k], atol=1e-9, rtol=0)
    for key in counts:
        assert res.warnings[key] == ref["counts"][key], key


@pytest.mark.parametrize("tie_break", ["stable", "official"])
@pytest.mark.parametrize("on_grid", [True, False], ids=["ties", "continuous"])
def test_matches_brute_force_on_random_cases(tie_break, on_grid):
    compared = sum(_compare(seed, on_grid, tie_break, cap=None) for seed in range(150))
    assert compared > 100


def test_opt_ins_match_brute_force():
    """--max-per-video N and --ignore-unknown-videos (opt-in departures) against the reference's model of them."""
    assert sum(_compare(seed, True, "stable", cap=3) for seed in range(60)) > 40
    assert sum(_compare(seed, True, "stable", cap=None, ignore_unknown_videos=True) for seed in range(60)) > 40


def test_stable_and_official_tie_breaks_differ_somewhere():
    """Guards the official-mode test above against silently testing the stable path twice."""
    differ = 0
    for seed in range(60):
        videos, gt, preds = random_case(seed, on_grid=True)
        if not gt:
            continue
        a = evaluate_detection(gt_segments(gt, videos), pred_segments(preds), UNAV100_TIOU)
        b = evaluate_detection(gt_segments(gt, videos), pred_segments(preds), UNAV100_TIOU, tie_break="official")
        differ += not np.allclose(a.mAP, b.mAP)
    assert differ > 0


def test_larger_random_case_against_brute_force():
    videos, gt, preds = random_case(12345, num_videos=60, num_classes=4, on_grid=False)
    res = evaluate_detection(gt_segments(gt, videos), pred_segments(preds), ANET_TIOU)
    ref = reference.evaluate(gt, preds, ANET_TIOU, split_videos=videos)
    np.testing.assert_allclose(res.mAP, ref["mAP"], atol=1e-9, rtol=0)
    np.testing.assert_allclose(res.recall["5x"], ref["recall"]["5x"], atol=1e-9, rtol=0)


def test_bench_like_data_against_brute_force():
    """UnAV-like statistics (real annotations, 100 predictions per video) at a size the reference can do."""
    from tests.helpers import load_script

    module = load_script("bench/eval_speed.py")
    gt, preds = module.synthesize(module.load_annotation_videos(module.DEFAULT_ANNOTATIONS), 60, seed=1)
    res = evaluate_detection(gt, preds, UNAV100_TIOU)
    official = evaluate_detection(gt, preds, UNAV100_TIOU, tie_break="official")  # no ties: same numbers
    np.testing.assert_allclose(official.mAP, res.mAP, atol=1e-12, rtol=0)
    gt_rows = [(v, int(c), float(s), float(e)) for v, c, s, e in zip(gt.video_ids, gt.label, gt.t_start, gt.t_end)]
    pred_rows = [
        (v, int(c), float(s), float(e), float(p))
        for v, c, s, e, p in zip(preds.video_ids, preds.label, preds.t_start, preds.t_end, preds.score)
    ]
    ref = reference.evaluate(gt_rows, pred_rows, UNAV100_TIOU, split_videos=list(gt.videos))
    np.testing.assert_allclose(res.mAP, ref["mAP"], atol=1e-9, rtol=0)
    for k in ("1x", "5x"):
        np.testing.assert_allclose(res.recall[k], ref["recall"][k], atol=1e-9, rtol=0)
    assert res.average > 0.05
