"""Classification metrics on plain arrays: accuracy, top-k, per-class recall, confusion, calibration.

Pure numpy, no model and no I/O, so every number in an evaluation JSON can be checked by hand.
Conventions follow scikit-learn: `confusion[i, j]` counts true class i predicted as j; a class with
no true samples has recall 0/0, which is left out of the mean per-class recall (as
`balanced_accuracy_score` does) and reported as 0 in the per-class table.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

ECE_BINS = 15


def _check_labels(y_true: np.ndarray, n_classes: int, name: str = "labels") -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"{name}: values must lie in [0, {n_classes}), got [{y.min()}, {y.max()}]")
    return y.astype(np.int64)


def accuracy(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray) -> float:
    """Fraction of exact matches."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"labels and predictions differ in shape: {t.shape} vs {p.shape}")
    return float((t == p).mean()) if t.size else float("nan")


def topk_correct(y_true: np.ndarray, topk_indices: np.ndarray, k: int) -> np.ndarray:
    """Per-sample booleans: is the true class among the first `k` columns of `topk_indices`?"""
    if topk_indices.shape[1] < k:
        raise ValueError(f"need at least {k} ranked classes per sample, got {topk_indices.shape[1]}")
    return (topk_indices[:, :k] == np.asarray(y_true)[:, None]).any(axis=1)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """[n_classes, n_classes] int64 counts, rows = true class, columns = predicted class."""
    t = _check_labels(y_true, n_classes)
    p = _check_labels(y_pred, n_classes, "predictions")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_report(confusion: np.ndarray, classnames: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per class from a confusion matrix (0 where undefined)."""
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    names = list(classnames) if classnames is not None else [str(i) for i in range(len(cm))]
    return [
        {
            "class": names[i],
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i in range(len(cm))
    ]


def mean_per_class_recall(confusion: np.ndarray) -> float:
    """Mean recall over classes that have samples (= scikit-learn's balanced accuracy)."""
    cm = np.asarray(confusion, dtype=np.float64)
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        return float("nan")
    return float((np.diag(cm)[present] / support[present]).mean())


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS) -> dict[str, Any]:
    """ECE over `n_bins` equal-width confidence bins: sum_b (n_b / N) |accuracy_b - confidence_b|.

    Bin b holds confidences in (b/n, (b+1)/n]; a confidence of exactly 0 goes to the first bin.
    Returns the ECE, the maximum calibration error and the per-bin table (for reliability plots).
    """
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    if conf.shape != ok.shape or conf.ndim != 1:
        raise ValueError(f"confidence and correctness must be 1-D arrays of equal length: {conf.shape}, {ok.shape}")
    if conf.size and (conf.min() < 0 or conf.max() > 1 + 1e-6):
        raise ValueError("confidences must lie in [0, 1]")
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins).astype(np.float64)
    conf_sum = np.bincount(bins, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(bins, weights=ok, minlength=n_bins)
    nonempty = count > 0
    mean_conf = np.divide(conf_sum, count, out=np.zeros(n_bins), where=nonempty)
    mean_acc = np.divide(acc_sum, count, out=np.zeros(n_bins), where=nonempty)
    gap = np.abs(mean_acc - mean_conf)
    total = max(conf.size, 1)
    return {
        "ece": float((count / total * gap).sum()),
        "mce": float(gap[nonempty].max()) if nonempty.any() else 0.0,
        "n_bins": n_bins,
        "bins": [
            {
                "upper": (b + 1) / n_bins,
                "count": int(count[b]),
                "confidence": float(mean_conf[b]),
                "accuracy": float(mean_acc[b]),
            }
            for b in range(n_bins)
        ],
    }


def chance_levels(labels: np.ndarray, n_classes: int) -> dict[str, float]:
    """Accuracy of guessing: uniformly (1/C) and always the most frequent class (from the counts)."""
    counts = np.bincount(_check_labels(labels, n_classes), minlength=n_classes)
    total = max(int(counts.sum()), 1)
    return {"uniform": 1.0 / n_classes, "majority": float(counts.max() / total)}


def _logit(p: Sequence[float] | np.ndarray, eps: float = 1e-4) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), eps, 1 - eps)
    return np.log(p / (1 - p))


def effective_robustness(id_accuracy: Sequence[float], shift_accuracy: Sequence[float]) -> np.ndarray:
    """Shifted accuracy minus what a baseline fit predicts from in-distribution accuracy (Taori et al.).

    The baseline is a least-squares line through (logit ID accuracy, logit shifted accuracy) of all
    the given models; a model's effective robustness is its residual on the accuracy scale. Needs
    at least three models (two points always lie on their own line).
    """
    x, y = _logit(id_accuracy), _logit(shift_accuracy)
    if len(x) < 3:
        raise ValueError(f"effective robustness needs at least 3 models, got {len(x)}")
    slope, intercept = np.polyfit(x, y, 1) if np.ptp(x) > 0 else (0.0, float(y.mean()))
    predicted = 1 / (1 + np.exp(-(slope * x + intercept)))
    return np.asarray(shift_accuracy, np.float64) - predicted
