"""Brute-force, loop-by-loop implementation of the metric's definition, for tests only.

Written from the definition (ActivityNet eval_detection.py + ActionFormer's top-kx recall + the
project's policies), deliberately without vectorisation or shared helpers, so that it can catch
mistakes in clasp_dist.evaluation.metric.
"""
from __future__ import annotations

import numpy as np


def tiou(ps, pe, gs, ge):
    inter = max(0.0, min(pe, ge) - max(ps, gs))
    union = (ge - gs) + (pe - ps) - inter
    if union <= 0:
        return 1.0 if ps == gs else 0.0
    return inter / union


def interpolated_ap(prec, rec):
    mprec = [0.0] + list(prec) + [0.0]
    mrec = [0.0] + list(rec) + [1.0]
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    ap = 0.0
    for i in range(1, len(mrec)):
        if mrec[i] != mrec[i - 1]:
            ap += (mrec[i] - mrec[i - 1]) * mprec[i]
    return ap


def order_desc(scores, tie_break):
    """Indices by descending score: stable (ties in input order) or the official numpy call."""
    if tie_break == "stable":
        return sorted(range(len(scores)), key=lambda i: -scores[i])
    return list(np.argsort(np.asarray(scores, dtype=float))[::-1]) if scores else []


def apply_policies(gt_videos, preds, classes_with_gt, cap):
    """preds: list of (video, label, s, e, score) in input order -> kept list, counts."""
    counts = dict(unknown_video=0, predictions_over_cap=0, class_without_gt=0)
    known = []
    for p in preds:
        if p[0] in gt_videos:
            known.append(p)
        else:
            counts["unknown_video"] += 1
    dropped = set()
    if cap is not None:
        by_video = {}
        for i, p in enumerate(known):
            by_video.setdefault(p[0], []).append(i)
        for idxs in by_video.values():
            ranked = sorted(idxs, key=lambda i: -known[i][4])
            dropped.update(ranked[cap:])
    counts["predictions_over_cap"] = len(dropped)
    kept = []
    for i, p in enumerate(known):
        if i in dropped:
            continue
        if p[1] not in classes_with_gt:
            counts["class_without_gt"] += 1
            continue
        kept.append(p)
    return kept, counts


def evaluate(gt, preds, thresholds, num_classes, gt_videos, *, top_kx=(1, 5), cap=100, tie_break="stable"):
    """gt: list of (video, label, s, e); preds: list of (video, label, s, e, score).

    Returns dict(ap [T][C] (None for classes without GT), mAP [T], average, recall {"1x": [T]}, counts).
    """
    classes_with_gt = sorted({g[1] for g in gt})
    preds, counts = apply_policies(set(gt_videos), preds, set(classes_with_gt), cap)
    nt = len(thresholds)
    ap = [[None] * num_classes for _ in range(nt)]
    recall = {f"{k}x": [[None] * num_classes for _ in range(nt)] for k in top_kx}
    for c in classes_with_gt:
        cgt = [g for g in gt if g[1] == c]
        cpred = [p for p in preds if p[1] == c]
        npos = len(cgt)
        order = order_desc([p[4] for p in cpred], tie_break)
        for t_i, thr in enumerate(thresholds):
            locked = [False] * npos
            tps = []
            for i in order:
                p = cpred[i]
                cands = [j for j in range(npos) if cgt[j][0] == p[0]]
                ious = [tiou(p[2], p[3], cgt[j][2], cgt[j][3]) for j in cands]
                if tie_break == "stable":
                    visit = sorted(range(len(cands)), key=lambda a: -ious[a])
                else:
                    visit = list(np.argsort(np.asarray(ious))[::-1])
                is_tp = False
                for a in visit:
                    if ious[a] < thr:
                        break
                    if locked[cands[a]]:
                        continue
                    locked[cands[a]] = True
                    is_tp = True
                    break
                tps.append(is_tp)
            prec, rec, tp_sum = [], [], 0
            for n, is_tp in enumerate(tps, start=1):
                tp_sum += is_tp
                prec.append(tp_sum / n)
                rec.append(tp_sum / npos)
            ap[t_i][c] = interpolated_ap(prec, rec) if tps else 0.0
        for k in top_kx:
            for t_i, thr in enumerate(thresholds):
                hit = 0
                for v in sorted({g[0] for g in cgt}):
                    vgt = [g for g in cgt if g[0] == v]
                    vpred = [p for p in cpred if p[0] == v]
                    top = [vpred[i] for i in order_desc([p[4] for p in vpred], tie_break)][:k * len(vgt)]
                    for g in vgt:
                        if any(tiou(p[2], p[3], g[2], g[3]) >= thr for p in top):
                            hit += 1
                recall[f"{k}x"][t_i][c] = hit / npos
    mAP = [float(np.mean([ap[t][c] for c in classes_with_gt])) for t in range(nt)]
    mrec = {k: [float(np.mean([r[t][c] for c in classes_with_gt])) for t in range(nt)] for k, r in recall.items()}
    return dict(ap=ap, mAP=mAP, average=float(np.mean(mAP)), recall=mrec, counts=counts)
