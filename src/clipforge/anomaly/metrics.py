"""Anomaly metrics: image AUROC / AP / F1-max, pixel AUROC / AP and AUPRO, in bounded memory.

Pixel metrics see millions of scores per dataset (MVTec AD's test split has ~0.4 G pixels), so
`PixelScores` never keeps them: each map is rounded to float16 and counted in histograms over all
65,536 float16 values (positives, negatives, and per-region weights for AUPRO), 1.5 MB in all.
The curves are then exact for the rounded scores (ties count as sklearn counts them); rounding
moves a score by at most 1 part in 2048, so only scores that close can newly tie.

AUPRO (Bergmann et al., MVTec AD): the per-region overlap — the mean over connected anomalous
regions (8-connected, per image) of the fraction of the region above a threshold — integrated over
the false-positive rate of normal pixels up to `max_fpr` (0.3) and divided by it. Because
PRO(t) = Σ_pixels [s ≥ t] / (|region| · n_regions), it too is a weighted histogram.
"""

from __future__ import annotations

from typing import Any

import numpy as np

N_KEYS = 1 << 16


def _keys(scores: np.ndarray) -> np.ndarray:
    """Order-preserving uint16 keys of the float16-rounded scores (larger score, larger key)."""
    values = np.asarray(scores, dtype=np.float32) + np.float32(0.0)  # -0.0 becomes +0.0: one key for zero
    if not np.isfinite(values).all():
        raise ValueError("anomaly scores must be finite (got NaN or infinity)")
    if np.abs(values).max(initial=0.0) > np.finfo(np.float16).max:
        raise ValueError(f"anomaly scores must lie within ±65504 to be counted (got {float(np.abs(values).max()):.4g})")
    bits = values.astype(np.float16).view(np.uint16).astype(np.int64)
    negative = bits >= 0x8000
    return np.where(negative, 0xFFFF - bits, bits | 0x8000)


def _trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def _curve_until(x: np.ndarray, y: np.ndarray, x_max: float) -> tuple[np.ndarray, np.ndarray]:
    """The curve's points with x ≤ x_max, closed by linear interpolation at x_max."""
    inside = x <= x_max
    cx, cy = x[inside], y[inside]
    if cx[-1] < x_max and (~inside).any():
        j = int(np.argmax(~inside))
        x0, x1, y0, y1 = x[j - 1], x[j], y[j - 1], y[j]
        cx = np.append(cx, x_max)
        cy = np.append(cy, y0 + (y1 - y0) * (x_max - x0) / (x1 - x0))
    return cx, cy


class PixelScores:
    """Accumulates per-pixel anomaly maps with their truth masks; see the module doc."""

    def __init__(self) -> None:
        self.positive = np.zeros(N_KEYS, dtype=np.int64)
        self.negative = np.zeros(N_KEYS, dtype=np.int64)
        self.region_weight = np.zeros(N_KEYS, dtype=np.float64)
        self.regions = 0
        self.images = 0

    def update(self, scores: np.ndarray, mask: np.ndarray) -> None:
        """One image: `scores` [H, W] (higher = more anomalous), `mask` [H, W] (True = anomalous)."""
        from scipy import ndimage  # scipy comes with the anomaly extra (scikit-learn)

        scores, mask = np.asarray(scores), np.asarray(mask, dtype=bool)
        if scores.shape != mask.shape:
            raise ValueError(f"anomaly map {scores.shape} and mask {mask.shape} differ in size")
        keys = _keys(scores)
        self.positive += np.bincount(keys[mask], minlength=N_KEYS)
        self.negative += np.bincount(keys[~mask], minlength=N_KEYS)
        labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
        if n:
            sizes = np.bincount(labels.ravel())
            weights = 1.0 / sizes[labels[mask]]
            self.region_weight += np.bincount(keys[mask], weights=weights, minlength=N_KEYS)
            self.regions += n
        self.images += 1

    def _cumulative(self, hist: np.ndarray) -> np.ndarray:
        """`hist`'s mass at or above each distinct score present, from the highest score down."""
        present = (self.positive + self.negative) > 0
        return np.cumsum(hist[present][::-1])

    def _check(self) -> str | None:
        if not self.positive.sum():
            return "no anomalous pixels"
        if not self.negative.sum():
            return "no normal pixels"
        return None

    def auroc(self) -> float:
        """Pixel-level ROC AUC (sklearn's `roc_auc_score` on the rounded scores)."""
        if reason := self._check():
            raise ValueError(f"pixel AUROC is undefined: {reason}")
        fpr = np.concatenate([[0.0], self._cumulative(self.negative) / self.negative.sum()])
        tpr = np.concatenate([[0.0], self._cumulative(self.positive) / self.positive.sum()])
        return _trapezoid(fpr, tpr)

    def ap(self) -> float:
        """Pixel-level average precision (sklearn's `average_precision_score` on the rounded scores)."""
        if reason := self._check():
            raise ValueError(f"pixel AP is undefined: {reason}")
        tp = self._cumulative(self.positive)
        recall, precision = tp / self.positive.sum(), tp / self._cumulative(self.positive + self.negative)
        return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))

    def aupro(self, max_fpr: float = 0.3) -> float:
        """Area under the per-region-overlap curve up to `max_fpr`, divided by `max_fpr` (0–1)."""
        if reason := self._check():
            raise ValueError(f"pixel AUPRO is undefined: {reason}")
        fpr = np.concatenate([[0.0], self._cumulative(self.negative) / self.negative.sum()])
        pro = np.concatenate([[0.0], self._cumulative(self.region_weight) / self.regions])
        x, y = _curve_until(fpr, pro, max_fpr)
        return _trapezoid(x, y) / max_fpr

    def summary(self) -> dict[str, Any]:
        """`pixel_auroc`, `pixel_ap`, `pixel_aupro` (None where undefined, with `pixel_note` saying why)."""
        if reason := self._check():
            return {"pixel_auroc": None, "pixel_ap": None, "pixel_aupro": None, "pixel_note": reason}
        return {"pixel_auroc": self.auroc(), "pixel_ap": self.ap(), "pixel_aupro": self.aupro()}


def image_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """`image_auroc`, `image_ap` and `image_f1_max` (the best F1 over all thresholds), by scikit-learn."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score  # anomaly extra

    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    if not np.isfinite(scores).all():
        raise ValueError("image anomaly scores must be finite (got NaN or infinity)")
    if labels.all() or not labels.any():
        kind = "anomalous" if labels.all() else "normal"
        note = f"every test image is {kind}: image metrics need both"
        return {"image_auroc": None, "image_ap": None, "image_f1_max": None, "image_note": note}
    precision, recall, _ = precision_recall_curve(labels, scores)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return {
        "image_auroc": float(roc_auc_score(labels, scores)),
        "image_ap": float(average_precision_score(labels, scores)),
        "image_f1_max": float(f1.max()),
    }
