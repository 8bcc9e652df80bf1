"""Anomaly metrics against scikit-learn and a direct per-threshold computation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

from clipforge.anomaly.metrics import PixelScores, _keys, image_metrics


def _maps(seed: int, n: int = 5, size: int = 24) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        mask = np.zeros((size, size), dtype=bool)
        for _ in range(i % 3):  # 0, 1 or 2 defect regions, some touching the border
            y, x = rng.integers(0, size - 4, 2)
            mask[y : y + rng.integers(2, 7), x : x + rng.integers(2, 7)] = True
        scores = rng.normal(size=(size, size)) + 1.5 * mask
        scores[rng.random((size, size)) < 0.2] = 0.25  # many exact ties, across both classes
        out.append((scores.astype(np.float32), mask))
    return out


def _direct_aupro(maps: list[tuple[np.ndarray, np.ndarray]], max_fpr: float = 0.3) -> float:
    regions = []
    for scores, mask in maps:
        labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [scores[labels == r] for r in range(1, n + 1)]
    normal = np.concatenate([s[~m] for s, m in maps])
    thresholds = np.unique(np.concatenate([s.ravel() for s, _ in maps]))[::-1]
    fpr = [0.0] + [float((normal >= t).mean()) for t in thresholds]
    pro = [0.0] + [float(np.mean([(r >= t).mean() for r in regions])) for t in thresholds]
    xs, ys = [], []
    for i, (x, y) in enumerate(zip(fpr, pro)):
        if x > max_fpr:
            x0, y0 = fpr[i - 1], pro[i - 1]
            xs.append(max_fpr)
            ys.append(y0 + (y - y0) * (max_fpr - x0) / (x - x0))
            break
        xs.append(x)
        ys.append(y)
    return float(np.trapezoid(ys, xs)) / max_fpr


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pixel_metrics_match_sklearn_and_the_direct_aupro(seed):
    maps = _maps(seed)
    acc = PixelScores()
    for scores, mask in maps:
        acc.update(scores, mask)
    rounded = [(s.astype(np.float16).astype(np.float64), m) for s, m in maps]
    y = np.concatenate([m.ravel() for _, m in rounded])
    s16 = np.concatenate([s.ravel() for s, _ in rounded])
    s32 = np.concatenate([s.ravel() for s, _ in maps])
    assert acc.auroc() == pytest.approx(roc_auc_score(y, s16), abs=1e-12)
    assert acc.auroc() == pytest.approx(roc_auc_score(y, s32), abs=1e-3)
    assert acc.ap() == pytest.approx(average_precision_score(y, s16), abs=1e-12)
    assert acc.aupro() == pytest.approx(_direct_aupro(rounded), abs=1e-12)
    assert acc.aupro(0.05) == pytest.approx(_direct_aupro(rounded, 0.05), abs=1e-12)
    assert 0.5 < acc.auroc() < 1 and acc.regions == sum(ndimage.label(m, np.ones((3, 3)))[1] for _, m in maps)
    assert acc.positive.nbytes + acc.negative.nbytes + acc.region_weight.nbytes == 3 * 8 * 65536  # bounded


def test_float16_keys_keep_the_order_of_scores_of_any_sign():
    values = np.sort(np.random.default_rng(0).normal(scale=50, size=2000)).astype(np.float16)
    keys = _keys(values)
    assert (np.diff(keys) >= 0).all() and (np.diff(keys)[np.diff(values.astype(np.float64)) > 0] > 0).all()
    with pytest.raises(ValueError, match="finite"):
        _keys(np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="65504"):
        _keys(np.array([1e6]))
    assert _keys(np.array([-0.0]))[0] == _keys(np.array([0.0]))[0]


def test_pixel_metrics_need_both_kinds_of_pixel():
    acc = PixelScores()
    acc.update(np.zeros((4, 4)), np.zeros((4, 4), dtype=bool))
    assert acc.summary()["pixel_auroc"] is None and "anomalous" in acc.summary()["pixel_note"]
    with pytest.raises(ValueError, match="undefined"):
        acc.auroc()
    with pytest.raises(ValueError, match="differ"):
        acc.update(np.zeros((4, 4)), np.zeros((4, 5), dtype=bool))


def test_image_metrics_against_sklearn_and_a_brute_force_f1():
    rng = np.random.default_rng(3)
    labels = rng.random(60) < 0.4
    scores = rng.normal(size=60) + labels
    got = image_metrics(scores, labels)
    best = 0.0
    for t in np.unique(scores):
        pred = scores >= t
        tp = (pred & labels).sum()
        if tp:
            p, r = tp / pred.sum(), tp / labels.sum()
            best = max(best, 2 * p * r / (p + r))
    assert got["image_auroc"] == pytest.approx(roc_auc_score(labels, scores))
    assert got["image_ap"] == pytest.approx(average_precision_score(labels, scores))
    assert got["image_f1_max"] == pytest.approx(best)
    assert image_metrics(scores, np.ones(60))["image_auroc"] is None
