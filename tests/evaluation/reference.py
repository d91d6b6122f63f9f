"""The official evaluation, written loop by loop for tests only; independent of clasp_dist.

Follows ActivityNet ``Evaluation/eval_detection.py`` (``compute_average_precision_detection``,
``segment_iou``, ``interpolated_prec_rec``) as used by UnAV-100 / ActionFormer (``libs/utils/metrics.py``:
``load_gt_seg_from_json`` + ``remove_duplicate_annotations``, ``ANETdetection``), and ActionFormer's
``compute_topkx_recall_detection``:

- ground truth: the split's annotations, duplicates removed per video (same ``label_id``, start and
  end within 1e-3 s of an event kept before), labels are the file's ``label_id`` values, whatever
  they are (gaps allowed); the evaluated classes are the labels that have ground truth
  (``activity_index = sorted(unique(gt labels))``); mAP is the mean over them;
- per class, predictions sorted by descending score; a prediction whose video has no ground truth
  of that class (``get_group`` fails: another video, a video outside the split) is a false positive;
  otherwise it visits that video's segments by descending tIoU, stops (false positive) at the first
  below the threshold, skips locked ones, and locks the first free one (true positive);
- AP: VOC 2011 interpolated precision/recall; a class without predictions scores 0;
- predictions of a label without ground truth are ignored (docs/evaluation.md; ActionFormer leaves them
  unmapped, UnAV's ``replace`` does the same), and counted here;
- no cap on predictions per video.

``cap`` and ``ignore_unknown_videos`` model the product's opt-in flags (off = official). Ties:
``tie_break="official"`` replays the literal numpy calls (``argsort()[::-1]``); ``"stable"`` keeps
input order for equal scores and the earlier segment for equal tIoU. The official ``segment_iou`` is
used as is, so two zero-length segments give NaN, which the official loop treats as a match; the
random cases here never produce a zero-length ground-truth segment.
"""

from __future__ import annotations

import numpy as np

TOL = 1e-3


def remove_duplicates(events):
    """events: list of (s, e, label_id) of one video -> kept, in order (UnAV's rule)."""
    kept = []
    for s, e, c in events:
        if any(abs(s - ks) <= TOL and abs(e - ke) <= TOL and c == kc for ks, ke, kc in kept):
            continue
        kept.append((s, e, c))
    return kept


def segment_iou(ts, te, cs, ce):
    """The official formula for one pair, floats as numpy computes them (0/0 -> NaN)."""
    inter = max(min(te, ce) - max(ts, cs), 0.0)
    union = (ce - cs) + (te - ts) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.float64(inter) / np.float64(union))


def interpolated_prec_rec(prec, rec):
    mprec = [0.0] + list(prec) + [0.0]
    mrec = [0.0] + list(rec) + [1.0]
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mprec[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])


def order_desc(values, tie_break):
    """Indices by descending value: stable (ties in input order) or the official numpy call."""
    if tie_break == "stable":
        return sorted(range(len(values)), key=lambda i: -values[i])
    return [int(i) for i in np.argsort(np.asarray(values, dtype=float))[::-1]] if values else []


def ground_truth_of(database, split):
    """database: {vid: {"subset", "annotations": [{"segment", "label_id"}]}} -> [(vid, label_id, s, e)]."""
    rows = []
    for vid, entry in database.items():
        if entry["subset"].lower() != split:
            continue
        events = [(float(a["segment"][0]), float(a["segment"][1]), int(a["label_id"])) for a in entry["annotations"]]
        rows += [(vid, c, s, e) for s, e, c in remove_duplicates(events)]
    return rows


def class_ap(cgt, cpred, thresholds, tie_break):
    """compute_average_precision_detection for one class: cgt [(vid, s, e)], cpred [(vid, s, e, score)]."""
    if not cpred:
        return [0.0] * len(thresholds)
    npos = len(cgt)
    order = order_desc([p[3] for p in cpred], tie_break)
    ranked = [cpred[i] for i in order]
    by_video = {}
    for j, g in enumerate(cgt):
        by_video.setdefault(g[0], []).append(j)
    out = []
    for thr in thresholds:
        lock = [False] * npos
        tp, fp = [], []
        for vid, s, e, _ in ranked:
            if vid not in by_video:  # get_group fails
                tp.append(0)
                fp.append(1)
                continue
            cand = by_video[vid]
            ious = [segment_iou(s, e, cgt[j][1], cgt[j][2]) for j in cand]
            if tie_break == "stable":
                visit = sorted(range(len(cand)), key=lambda a: -ious[a] if ious[a] == ious[a] else -np.inf)
            else:
                visit = [int(a) for a in np.argsort(np.asarray(ious))[::-1]]
            hit = 0
            for a in visit:
                if ious[a] < thr:
                    break
                if lock[cand[a]]:
                    continue
                lock[cand[a]] = True
                hit = 1
                break
            tp.append(hit)
            fp.append(1 - hit)
        tpc, fpc, prec, rec = 0, 0, [], []
        for t, f in zip(tp, fp):
            tpc, fpc = tpc + t, fpc + f
            prec.append(tpc / (tpc + fpc))
            rec.append(tpc / npos)
        out.append(interpolated_prec_rec(prec, rec))
    return out


def class_topkx_recall(cgt, cpred, thresholds, top_k, tie_break):
    """compute_topkx_recall_detection for one class -> {k: [T]}."""
    hits = {k: [0] * len(thresholds) for k in top_k}
    for vid in sorted({g[0] for g in cgt}):
        vgt = [g for g in cgt if g[0] == vid]
        vpred = [p for p in cpred if p[0] == vid]
        ranked = [vpred[i] for i in order_desc([p[3] for p in vpred], tie_break)]
        for k in top_k:
            top = ranked[: k * len(vgt)]
            for t, thr in enumerate(thresholds):
                hits[k][t] += sum(any(segment_iou(p[1], p[2], g[1], g[2]) >= thr for p in top) for g in vgt)
    return {k: [h / len(cgt) for h in hits[k]] for k in top_k}


def evaluate(
    gt,
    preds,
    thresholds,
    *,
    top_kx=(1, 5),
    tie_break="stable",
    cap=None,
    ignore_unknown_videos=False,
    split_videos=None,
):
    """gt: [(video, label_id, s, e)] (duplicates already removed); preds: [(video, label_id, s, e, score)].

    ``split_videos``: the split's videos (default: those with ground truth); predictions elsewhere are
    "unknown" (false positives unless ``ignore_unknown_videos``). Returns dict(ap {label_id: [T]},
    mAP [T], average, recall {"1x": [T]}, counts).
    """
    known = set(split_videos) if split_videos is not None else {g[0] for g in gt}
    counts = dict(unknown_video=sum(p[0] not in known for p in preds), predictions_over_cap=0, class_without_gt=0)
    if ignore_unknown_videos:
        preds = [p for p in preds if p[0] in known]
    if cap is not None:
        kept = []
        for vid in dict.fromkeys(p[0] for p in preds):
            idx = [i for i, p in enumerate(preds) if p[0] == vid]
            kept += [idx[i] for i in order_desc([preds[i][4] for i in idx], "stable")[:cap]]
        counts["predictions_over_cap"] = len(preds) - len(kept)
        preds = [p for i, p in enumerate(preds) if i in set(kept)]
    labels = sorted({g[1] for g in gt})
    counts["class_without_gt"] = sum(p[1] not in labels for p in preds)
    ap, recall = {}, {f"{k}x": {} for k in top_kx}
    for c in labels:
        cgt = [(g[0], g[2], g[3]) for g in gt if g[1] == c]
        cpred = [(p[0], p[2], p[3], p[4]) for p in preds if p[1] == c]
        ap[c] = class_ap(cgt, cpred, thresholds, tie_break)
        for k, r in class_topkx_recall(cgt, cpred, thresholds, top_kx, tie_break).items():
            recall[f"{k}x"][c] = r
    mAP = [float(np.mean([ap[c][t] for c in labels])) for t in range(len(thresholds))]
    mrec = {k: [float(np.mean([r[c][t] for c in labels])) for t in range(len(thresholds))] for k, r in recall.items()}
    return dict(ap=ap, mAP=mAP, average=float(np.mean(mAP)), recall=mrec, counts=counts)
