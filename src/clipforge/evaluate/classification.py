"""Zero-shot classification of feature arrays in chunks, and the metrics that summarise it."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..zeroshot import ZeroShotClassifier
from . import metrics as M

TOP_K = 5


def predict_chunked(
    features: np.ndarray, classifier: ZeroShotClassifier, k: int = TOP_K, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """(top-min(k, C) class indices [N, k'], softmax confidence of the top class [N]), chunk by chunk.

    Confidence is the softmax over `scale * cos (+ bias)` whatever the model's training loss, so
    calibration is comparable across models.
    """
    n, n_classes = len(features), len(classifier.classnames)
    kk = min(k, n_classes)
    top = np.empty((n, kk), np.int64)
    conf = np.empty(n, np.float32)
    for s in range(0, n, chunk):
        x = torch.from_numpy(np.array(features[s : s + chunk], dtype=np.float32))  # a writable copy
        logits = classifier.logits(x)
        top[s : s + chunk] = logits.topk(kk, dim=1).indices.numpy()
        conf[s : s + chunk] = logits.softmax(dim=1).max(dim=1).values.numpy()
    return top, conf


def classification_metrics(
    labels: np.ndarray, topk: np.ndarray, confidence: np.ndarray | None, classnames: list[str]
) -> tuple[dict[str, Any], list[str]]:
    """Top-1/top-5, mean per-class recall, confusion matrix, per-class report, ECE; plus notes."""
    n_classes = len(classnames)
    labels = np.asarray(labels, np.int64)
    pred = topk[:, 0]
    cm = M.confusion_matrix(labels, pred, n_classes)
    notes: list[str] = []
    top5: float | None = None
    if n_classes < TOP_K:
        notes.append(f"top5 is null: undefined with {n_classes} classes (fewer than 5)")
    elif topk.shape[1] >= TOP_K:
        top5 = float(M.topk_correct(labels, topk, TOP_K).mean())
    else:
        notes.append(f"top5 is null: only {topk.shape[1]} classes were ranked")
    absent = [classnames[i] for i in np.flatnonzero(cm.sum(axis=1) == 0)]
    if absent:
        notes.append(
            f"{len(absent)} class(es) have no test images and are left out of mean_per_class_recall: "
            + ", ".join(absent[:10])
            + (" ..." if len(absent) > 10 else "")
        )
    out: dict[str, Any] = {
        "top1": M.accuracy(labels, pred),
        "top5": top5,
        "mean_per_class_recall": M.mean_per_class_recall(cm),
        "n_samples": int(len(labels)),
        "n_classes": n_classes,
        "chance": M.chance_levels(labels, n_classes),
    }
    if confidence is not None:
        cal = M.expected_calibration_error(confidence, pred == labels)
        out["ece"], out["calibration"] = cal["ece"], cal
    out["per_class"] = M.per_class_report(cm, classnames)
    out["confusion_matrix"] = cm.tolist()
    return out, notes
