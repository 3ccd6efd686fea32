"""IoU, nIoU, Pd and Fa as the usual IRSTD scripts compute them, written from their definitions
with skimage, the independent reference that ``make bench`` times ours against and that the
fuzz tests compare ours with."""

from __future__ import annotations

import numpy as np


def reference_iou(pairs):
    """IoU and nIoU as the usual scripts compute them (BasicIRSTD ``mIoU``, ACM's
    ``SamplewiseSigmoidMetric``): one-bin histograms of prediction, label and intersection."""
    inter = union = 0
    niou = []
    for pred, label in pairs:
        predict = (pred > 0).astype("float32")
        target = (label > 0).astype("float32")
        intersection = predict * (predict == target)
        area_inter, _ = np.histogram(intersection, bins=1, range=(1, 1))
        area_pred, _ = np.histogram(predict, bins=1, range=(1, 1))
        area_lab, _ = np.histogram(target, bins=1, range=(1, 1))
        area_union = area_pred + area_lab - area_inter
        inter, union = inter + int(area_inter[0]), union + int(area_union[0])
        niou.append(int(area_inter[0]) / int(area_union[0]) if area_union[0] else 0.0)
    return {"IoU": inter / union, "nIoU": float(np.mean(niou))}


def reference_counts(pred: np.ndarray, label: np.ndarray) -> tuple[int, int, int, int]:
    """(targets, detected, false-alarm pixels by identity, by area value) of one image, as the
    usual ``PD_FA`` does: int64 arrays, skimage ``label`` + ``regionprops``, a Python loop over
    regions, greedy first match below 3 px. The area-value form is DNA-Net's: a prediction
    counts as matched when any matched prediction has the same area."""
    from skimage import measure

    predits, labelss = np.array(pred > 0).astype("int64"), np.array(label > 0).astype("int64")
    coord_image = measure.regionprops(measure.label(predits, connectivity=2))
    coord_label = measure.regionprops(measure.label(labelss, connectivity=2))
    free, matched_areas, matched_ids = list(coord_image), [], []
    for rg in coord_label:
        centroid_label = np.array(list(rg.centroid))
        for m in range(len(free)):
            if np.linalg.norm(np.array(list(free[m].centroid)) - centroid_label) < 3:
                matched_areas.append(int(free[m].area))
                matched_ids.append(free[m].label)
                del free[m]
                break
    fa_id = sum(int(r.area) for r in coord_image if r.label not in matched_ids)
    fa_compat = sum(int(r.area) for r in coord_image if int(r.area) not in matched_areas)
    return len(coord_label), len(matched_areas), fa_id, fa_compat


def reference_pd_fa(pairs):
    """Pd and Fa over ``pairs``: Fa by identity, and by area value (DNA-Net's form)."""
    targets = detected = fa_id = fa_compat = pixels = 0
    for pred, label in pairs:
        t, d, fi, fc = reference_counts(pred, label)
        targets, detected, fa_id, fa_compat = targets + t, detected + d, fa_id + fi, fa_compat + fc
        pixels += pred.shape[0] * pred.shape[1]
    return {"Pd": detected / targets, "Fa": fa_id / pixels}, {
        "Pd": detected / targets,
        "Fa": fa_compat / pixels,
    }
