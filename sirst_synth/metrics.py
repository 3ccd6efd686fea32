"""The IRSTD metrics as DNA-Net and BasicIRSTD define them, computed once per image.

- IoU: total intersection / total union over the split (pixel level).
- nIoU: mean of per-image IoU; an image whose label and prediction are both empty scores 0,
  as in the reference ``SamplewiseSigmoidMetric`` (``inter / (eps + union)``).
- Pd: detected label targets / all label targets. Targets are 8-connected components; a label
  target is detected when a predicted component's centroid lies at a distance strictly below
  ``match_distance`` (3 px) of its centroid. Matching is greedy one-to-one: label targets in
  order, each takes the first still unmatched predicted component that is close enough.
- Fa: pixels of unmatched predicted components / all pixels. ``fa_mode="identity"`` counts the
  unmatched components themselves, as current BasicIRSTD does (its ``PD_FA`` since the change
  of 2024-01-25). ``fa_mode="dnanet"`` reproduces DNA-Net's ``model/metric.py`` (and BasicIRSTD
  before 2024-01-25), which drops every unmatched component whose *area value* equals that of
  a matched one (``[x for x in areas if x not in matched_areas]``).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from sirst_synth.errors import DataError
from sirst_synth.native import function as native_function
from sirst_synth.targets import as_u8_binary, components

FA_MODES = ("identity", "dnanet")


class ImageScore(NamedTuple):
    """What one image contributes to the split's metrics (a NamedTuple: cheap in the inner loop)."""

    inter: int
    union: int
    targets: int
    detected: int
    fa_pixels: int
    fa_pixels_dnanet: int
    pixels: int


def _load_native():
    """The compiled fast path (``sirst_synth/_kernel.c``), or None where it was not built."""
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    return native_function(
        "sirst_score_image", [ptr, i64, ptr, i64, i64, i64, ctypes.c_double, ptr]
    )


#: Loaded once at import: a read-only handle, like a constant.
NATIVE = _load_native()


def score_image(
    pred: np.ndarray,
    label: np.ndarray,
    match_distance: float = 3.0,
    native: bool = True,
) -> ImageScore:
    """Score one binary prediction against one binary label of the same shape.

    Runs the compiled single-pass kernel where it was built (and ``native``), else the
    numpy/OpenCV path, the reference: both give the same numbers (the tests check it).
    """
    if NATIVE is None or not native or np.ndim(pred) != 2:
        pred, label = as_u8_binary(pred), as_u8_binary(label)
        if pred.shape != label.shape:
            raise ValueError(f"prediction {pred.shape} and label {label.shape} differ in shape")
        return _score_numpy(pred, label, match_distance)
    pred, label = _rows(pred), _rows(label)  # the kernel walks rows by their stride: no copy
    if pred.shape != label.shape:
        raise ValueError(f"prediction {pred.shape} and label {label.shape} differ in shape")
    out = np.empty(7, np.int64)
    h, w = pred.shape
    if NATIVE(
        pred.ctypes.data,
        pred.strides[0],
        label.ctypes.data,
        label.strides[0],
        h,
        w,
        float(match_distance),
        out.ctypes.data,
    ):
        raise MemoryError("out of memory while scoring an image")
    return ImageScore(*out.tolist())


def _rows(binary: np.ndarray) -> np.ndarray:
    """A uint8 view whose rows may be strided (a crop of a larger map) but whose pixels within
    a row are adjacent, as the kernel reads them; anything else becomes contiguous."""
    arr = np.asarray(binary)
    if arr.dtype == np.bool_:
        arr = arr.view(np.uint8)
    if arr.dtype == np.uint8 and arr.strides[1] == 1 and arr.strides[0] >= arr.shape[1]:
        return arr
    return as_u8_binary(arr)


def _score_numpy(pred: np.ndarray, label: np.ndarray, match_distance: float) -> ImageScore:
    pc, lc = components(pred), components(label)
    inter = 0
    if pc.count and lc.count:  # count the overlap inside the intersection of the two boxes only
        r0, c0 = max(pc.box[0], lc.box[0]), max(pc.box[1], lc.box[1])
        r1, c1 = min(pc.box[2], lc.box[2]), min(pc.box[3], lc.box[3])
        if r1 > r0 and c1 > c0:
            inter = int(np.count_nonzero(np.logical_and(pred[r0:r1, c0:c1], label[r0:r1, c0:c1])))
    areas = pc.areas.tolist()
    union = sum(areas) + int(lc.areas.sum()) - inter
    matched = _greedy_match(lc.centroids, pc.centroids, match_distance)
    fa_identity = sum(a for a, m in zip(areas, matched, strict=True) if not m)
    matched_areas = {a for a, m in zip(areas, matched, strict=True) if m}
    fa_compat = sum(
        a for a, m in zip(areas, matched, strict=True) if not m and a not in matched_areas
    )
    return ImageScore(
        inter=inter,
        union=union,
        targets=lc.count,
        detected=sum(matched),
        fa_pixels=fa_identity,
        fa_pixels_dnanet=fa_compat,
        pixels=int(pred.size),
    )


def _greedy_match(label_c: np.ndarray, pred_c: np.ndarray, distance: float) -> list[bool]:
    """Which predicted components are matched: label targets in order each take the first free
    predicted component whose centroid is closer than ``distance`` (DNA-Net / BasicIRSTD)."""
    matched = [False] * len(pred_c)
    if not len(pred_c) or not len(label_c):
        return matched
    diff = label_c[:, None, :] - pred_c[None, :, :]
    close = (np.sqrt((diff**2).sum(axis=2)) < distance).tolist()
    for row in close:
        for j, ok in enumerate(row):
            if ok and not matched[j]:
                matched[j] = True
                break
    return matched


@dataclass
class MetricTotals:
    """The per-image scores of a split (kept, not summed: nIoU averages per image and the
    Fa modes need each image's counts); ``summary`` gives the field's numbers."""

    scores: list[ImageScore] = field(default_factory=list)

    def add(self, score: ImageScore) -> None:
        self.scores.append(score)

    def summary(self, fa_mode: str = "identity") -> dict[str, float]:
        if fa_mode not in FA_MODES:
            raise ValueError(f"fa_mode must be one of {FA_MODES}, got {fa_mode!r}")
        s = self.scores
        inter = sum(x.inter for x in s)
        union = sum(x.union for x in s)
        targets = sum(x.targets for x in s)
        pixels = sum(x.pixels for x in s)
        fa_pix = sum(x.fa_pixels if fa_mode == "identity" else x.fa_pixels_dnanet for x in s)
        per_image = [x.inter / x.union if x.union else 0.0 for x in s]
        return {
            "images": len(s),
            "IoU": inter / union if union else 0.0,
            "nIoU": float(np.mean(per_image)) if per_image else 0.0,
            "Pd": sum(x.detected for x in s) / targets if targets else 0.0,
            "Fa": fa_pix / pixels if pixels else 0.0,
            "targets": targets,
            "detected": sum(x.detected for x in s),
            "fa_pixels": fa_pix,
            "pixels": pixels,
            "images_with_false_alarm": sum(
                (x.fa_pixels if fa_mode == "identity" else x.fa_pixels_dnanet) > 0 for x in s
            ),
        }

    def per_image(self, stems: list[str], fa_mode: str = "identity") -> list[dict]:
        """One row per image, in order, with the keys of PER_IMAGE_COLUMNS: the numbers behind
        the totals. One image can carry a split's IoU (a large false alarm adds to the summed
        union), so a reader needs to see which image did."""
        rows = []
        for stem, x in zip(stems, self.scores, strict=True):
            rows.append(
                {
                    "image": stem,
                    "IoU": x.inter / x.union if x.union else 0.0,
                    "intersection": x.inter,
                    "union": x.union,
                    "targets": x.targets,
                    "detected": x.detected,
                    "fa_pixels": x.fa_pixels if fa_mode == "identity" else x.fa_pixels_dnanet,
                    "pixels": x.pixels,
                }
            )
        return rows


#: The columns of a per-image row (``MetricTotals.per_image``; ``evaluate --per-image``).
PER_IMAGE_COLUMNS = (
    "image", "IoU", "intersection", "union", "targets", "detected", "fa_pixels", "pixels",
)  # fmt: skip


def most_false_alarms(rows: list[dict]) -> dict | None:
    """The image with the most false-alarm pixels (the first of equals) and its share of the
    split's false-alarm pixels; None where no image has any."""
    worst = max(rows, key=lambda r: r["fa_pixels"], default=None)
    if worst is None or worst["fa_pixels"] == 0:
        return None
    total = sum(r["fa_pixels"] for r in rows)
    return {
        "image": worst["image"],
        "fa_pixels": worst["fa_pixels"],
        "share": worst["fa_pixels"] / total,
    }


def binarize(prob: np.ndarray, threshold: float) -> np.ndarray:
    """Predicted target pixels: probability strictly above the threshold."""
    return np.asarray(prob) > threshold


def score_probability(
    prob: np.ndarray, label: np.ndarray, threshold: float, name: str
) -> ImageScore:
    """Score a probability map; a map of another size than its label is a data error (``name``
    says which file), since neither predictions nor labels are ever resized."""
    if prob.shape != label.shape:
        raise DataError(
            f"{name}: prediction is {prob.shape[1]}x{prob.shape[0]} but the label is "
            f"{label.shape[1]}x{label.shape[0]}; predict at the image's own size or fix the mask"
        )
    return score_image(binarize(prob, threshold), label)


def pd_fa_curve(
    pairs: list[tuple[np.ndarray, np.ndarray]],
    thresholds: np.ndarray,
    fa_mode: str = "identity",
    match_distance: float = 3.0,
) -> list[dict[str, float]]:
    """Pd and Fa at each threshold over (probability map, label) pairs: the ROC-like curve."""
    curve = []
    for t in thresholds:
        totals = MetricTotals()
        for prob, label in pairs:
            totals.add(score_image(binarize(prob, t), label, match_distance))
        row = totals.summary(fa_mode)
        curve.append({"threshold": float(t), "Pd": row["Pd"], "Fa": row["Fa"]})
    return curve
