"""Annotation JSON, shard meta and results JSON readers/writers; the real UnAV-100 file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from clasp_dist.evaluation.formats import (
    class_names_from_annotations,
    drop_duplicate_segments,
    ground_truth_from_metas,
    load_ground_truth,
    load_predictions,
    normalise_split,
    protocol_thresholds,
    results_json,
    write_predictions,
)
from clasp_dist.evaluation.metric import ANET_TIOU, UNAV100_TIOU, EvaluationInputError, Segments, evaluate_detection
from clasp_dist.evaluation.report import metrics_dict

# The real UnAV-100 annotation file ships inside the package (MIT); UNAV100_ANNOTATIONS may point elsewhere.
REAL_ANNOTATIONS = Path(
    os.environ.get(
        "UNAV100_ANNOTATIONS", Path(__file__).resolve().parents[2] / "clasp_dist/resources/unav100_annotations.json"
    )
)


def annotation_doc(subset_names=("train", "validation", "test"), with_ids=True):
    def ann(s, e, name, i):
        return {"segment": [s, e], "label": name, **({"label_id": i} if with_ids else {})}

    train, val, test = subset_names
    return {
        "version": "x",
        "database": {
            "t1": {"subset": train, "duration": 30.0, "annotations": [ann(1, 5, "dog", 1)]},
            "v1": {
                "subset": val,
                "duration": 20.0,
                "annotations": [
                    ann(2, 4, "cat", 0),
                    ann(2.0005, 4.0009, "cat", 0),
                    ann(2, 4, "dog", 1),
                    ann(2.5, 4, "cat", 0),
                ],
            },
            "v2": {"subset": val, "duration": 10.0, "annotations": []},
            "x1": {"subset": test, "duration": 12.0, "annotations": [ann(0, 12, "bird", 2)]},
        },
    }


def test_split_names_map_both_spellings():
    assert normalise_split("training") == "train" and normalise_split("testing") == "test"
    assert normalise_split("Validation") == "validation"
    with pytest.raises(EvaluationInputError, match="unknown split 'dev'"):
        normalise_split("dev")


def test_ground_truth_split_filter_and_duplicates():
    gt = load_ground_truth(annotation_doc(), "validation")
    assert gt.class_names == ("cat", "dog", "bird")
    assert gt.videos == ("v1", "v2")  # v2 has no annotations but belongs to the split
    assert gt.info["duplicates_dropped"] == 1  # the cat within 1e-3 s; the dog and the later cat stay
    assert sorted(zip(gt.label.tolist(), gt.t_start.tolist())) == [(0, 2.0), (0, 2.5), (1, 2.0)]
    assert gt.info["durations"] == {"v1": 20.0, "v2": 10.0}


def test_activitynet_subset_names_and_class_list_without_ids():
    doc = annotation_doc(("training", "validation", "testing"), with_ids=False)
    gt = load_ground_truth(doc, "test")  # our name for ActivityNet's 'testing'
    assert gt.videos == ("x1",)
    assert gt.class_names == ("bird", "cat", "dog")  # sorted names when there is no label_id
    assert gt.info["activitynet_subsets"] and protocol_thresholds(gt) == ANET_TIOU
    assert protocol_thresholds(load_ground_truth(annotation_doc(), "test")) == UNAV100_TIOU


def test_inconsistent_label_ids_are_an_error():
    doc = annotation_doc()
    doc["database"]["x1"]["annotations"][0]["label_id"] = 0  # 'bird' claims cat's id
    with pytest.raises(EvaluationInputError, match="label_id 0 names two classes"):
        class_names_from_annotations(doc)


def test_label_ids_with_gaps_map_through_the_files_own_pairs():
    doc = {
        "database": {
            "a": {
                "subset": "test",
                "duration": 9,
                "annotations": [
                    {"segment": [0, 1], "label": "cat", "label_id": 4},
                    {"segment": [2, 3], "label": "dog", "label_id": 10},
                ],
            }
        }
    }
    gt = load_ground_truth(doc, "test")
    assert gt.class_names == ("cat", "dog") and gt.info["label_ids"] == (4, 10)
    preds = load_predictions(
        {
            "results": {
                "a": [{"segment": [2, 3], "label": 10, "score": 0.9}, {"segment": [0, 1], "label": 1, "score": 0.8}]
            }
        },
        gt.class_names,
        gt.info["label_ids"],
    )
    assert preds.label.tolist() == [1] and preds.info["unknown_labels"] == 1  # id 1 is no class of this file
    res = evaluate_detection(gt, preds, (0.5,))
    assert res.ap[0].tolist() == [0.0, 1.0] and res.warnings["class_without_gt"] == 1


def test_missing_split_is_an_error():
    with pytest.raises(EvaluationInputError, match="no video of split 'train'"):
        load_ground_truth(
            {"database": {"a": {"subset": "test", "annotations": [{"segment": [0, 1], "label": "x", "label_id": 0}]}}},
            "train",
        )


def test_drop_duplicates_tolerance():
    kept, dropped = drop_duplicate_segments([(1.0, 2.0, 0), (1.001, 2.0, 0), (1.0011, 2.0, 0), (1.0, 2.0, 1)])
    assert dropped == 1 and kept == [(1.0, 2.0, 0), (1.0011, 2.0, 0), (1.0, 2.0, 1)]


def test_ground_truth_from_shard_metas():
    metas = [
        {"video_id": "a", "duration": 10.0, "labels": [0], "segments": [[1, 2, 0], [1, 2, 0], [3, 4, 1]]},
        {"video_id": "b", "duration": 5.0, "labels": [], "segments": []},
    ]
    gt = ground_truth_from_metas(metas, ["x", "y"])
    assert gt.videos == ("a", "b") and len(gt) == 2 and gt.info["duplicates_dropped"] == 1
    with pytest.raises(EvaluationInputError, match="video 'c': meta.json has no 'segments'"):
        ground_truth_from_metas([{"video_id": "c", "duration": 1.0}], ["x"])
    with pytest.raises(EvaluationInputError, match="video 'd' segment 0"):
        ground_truth_from_metas([{"video_id": "d", "segments": [[0, 1, 5]]}], ["x"])


def test_results_round_trip(tmp_path):
    names = ("cat", "dog", "bird")
    records = [
        dict(video_id="v1", label=1, t_start=0.1 + 0.2, t_end=3.0000000000000004, score=0.123456789012345),
        dict(video_id="v1", label=0, t_start=2.0, t_end=4.0, score=0.5),
        dict(video_id="v2", label=2, t_start=0.0, t_end=1.0, score=1e-9),
    ]
    path = tmp_path / "sub" / "pred.json"
    write_predictions(path, records, names, videos=["v1", "v2", "v3"])
    doc = json.loads(path.read_text())
    assert set(doc) == {"version", "results", "external_data"}
    assert doc["results"]["v3"] == [] and doc["results"]["v1"][0]["label"] == "dog"
    back = load_predictions(path, names)
    assert back.to_records() == records  # exact floats
    assert back.videos == ("v1", "v2", "v3")
    again = results_json(back, names, videos=["v1", "v2", "v3"])
    assert again == doc


def test_prediction_labels_by_name_or_id_and_errors():
    names = ("cat", "dog")
    doc = {
        "results": {
            "a": [{"segment": [0, 1], "label": 1, "score": 0.5}, {"segment": [0, 1], "label": "cat", "score": 0.4}]
        }
    }
    assert load_predictions(doc, names).label.tolist() == [1, 0]
    other = {
        "results": {
            "a": [
                {"segment": [0, 1], "label": "cow", "score": 0.5},
                {"segment": [0, 1], "label": 7, "score": 0.5},
                {"segment": [0, 1], "label": 2.0, "score": 0.5},
            ]
        }
    }
    kept = load_predictions(other, names)  # labels that are not classes: ignored and counted (docs/evaluation.md)
    assert len(kept) == 0 and kept.info["unknown_labels"] == 3 and kept.info["unknown_label_examples"][0] == "cow"
    bad = {"results": {"a": [{"segment": [0, 1], "label": -2, "score": 0.5}]}}
    with pytest.raises(EvaluationInputError, match=r"results\['a'\]\[0\]: label -2 is neither"):
        load_predictions(bad, names)
    bad = {"results": {"a": [{"segment": [0, 1], "label": "cat"}]}}
    with pytest.raises(EvaluationInputError, match="no 'score'"):
        load_predictions(bad, names)
    bad = {"results": {"b": [{"segment": [2, 1], "label": "cat", "score": 1}]}}
    with pytest.raises(EvaluationInputError, match="video 'b'.*t_end 1.0 < t_start 2.0"):
        load_predictions(bad, names)
    bad = {"results": {"b": [{"segment": [0, float("nan")], "label": "cat", "score": 1}]}}
    with pytest.raises(EvaluationInputError, match="video 'b'.*t_end is nan"):
        load_predictions(bad, names)


# ------------------------------------------------------------------ the real UnAV-100 annotations


@pytest.fixture(scope="module")
def real_test_split():
    return load_ground_truth(REAL_ANNOTATIONS, "test")


def test_real_annotations_shape(real_test_split):
    gt = real_test_split
    assert len(gt.class_names) == 100 and len(gt.videos) == 2167
    assert protocol_thresholds(gt) == UNAV100_TIOU
    assert len(gt) + gt.info["duplicates_dropped"] == sum(
        len(v["annotations"])
        for v in json.loads(REAL_ANNOTATIONS.read_text())["database"].values()
        if v["subset"] == "test"
    )


def test_real_annotations_perfect_predictions_score_one(real_test_split):
    gt = real_test_split
    perfect = Segments.from_arrays(gt.video_ids, gt.t_start, gt.t_end, gt.label, np.ones(len(gt)))
    res = evaluate_detection(gt, perfect, UNAV100_TIOU)
    assert np.all(res.mAP == 1.0) and res.average == 1.0
    assert np.all(res.recall["1x"] == 1.0)
    assert sum(res.warnings.values()) == 0


def test_real_annotations_shift_drops_map_at_the_expected_threshold(real_test_split):
    """Shift every prediction by f * its length: its tIoU with its own segment is (1 - f) / (1 + f)
    = 0.65, so mAP stays ~1 up to 0.6 and collapses from 0.7 on."""
    gt = real_test_split
    length = gt.t_end - gt.t_start
    f = 0.35 / 1.65
    shifted = Segments.from_arrays(
        gt.video_ids, gt.t_start + f * length, gt.t_end + f * length, gt.label, np.linspace(1.0, 0.5, len(gt))
    )
    res = evaluate_detection(gt, shifted, UNAV100_TIOU)
    m = metrics_dict(res)
    assert all(m[t] > 0.97 for t in ("0.1", "0.2", "0.3", "0.4", "0.5", "0.6"))
    assert all(m[t] < 0.01 for t in ("0.7", "0.8", "0.9"))
    assert np.all(np.diff(res.mAP) <= 1e-12)  # never increases with the threshold
