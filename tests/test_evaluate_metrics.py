"""Evaluation metrics: hand-computed cases and agreement with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipforge.evaluate import metrics as M
from clipforge.evaluate.classification import classification_metrics, predict_chunked
from clipforge.zeroshot import ZeroShotClassifier

skm = pytest.importorskip("sklearn.metrics")


def test_hand_computed_three_class_case():
    y = np.array([0, 0, 1, 2, 2, 2])
    p = np.array([0, 1, 1, 2, 0, 2])
    cm = M.confusion_matrix(y, p, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert M.accuracy(y, p) == pytest.approx(4 / 6)
    assert M.mean_per_class_recall(cm) == pytest.approx((1 / 2 + 1 + 2 / 3) / 3)
    report = M.per_class_report(cm, ["a", "b", "c"])
    assert [r["precision"] for r in report] == pytest.approx([1 / 2, 1 / 2, 1.0])
    assert [r["recall"] for r in report] == pytest.approx([1 / 2, 1.0, 2 / 3])
    assert report[2]["f1"] == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))
    assert [r["support"] for r in report] == [2, 1, 3]


def test_top_k_hand_computed():
    topk = np.array([[2, 0, 1], [1, 2, 0], [0, 1, 2]])
    y = np.array([0, 0, 0])
    assert M.topk_correct(y, topk, 1).tolist() == [False, False, True]
    assert M.topk_correct(y, topk, 2).tolist() == [True, False, True]
    with pytest.raises(ValueError, match="at least 4"):
        M.topk_correct(y, topk, 4)


def test_against_sklearn_on_random_predictions():
    rng = np.random.default_rng(0)
    n, c = 300, 7
    y = rng.integers(0, c, n)
    scores = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[y]
    topk = np.argsort(-scores, axis=1)
    pred = topk[:, 0]
    cm = M.confusion_matrix(y, pred, c)
    assert M.accuracy(y, pred) == pytest.approx(skm.accuracy_score(y, pred))
    assert M.mean_per_class_recall(cm) == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert np.array_equal(cm, skm.confusion_matrix(y, pred, labels=range(c)))
    for k in (1, 3, 5):
        ours = M.topk_correct(y, topk, k).mean()
        assert ours == pytest.approx(skm.top_k_accuracy_score(y, scores, k=k, labels=range(c)))
    prec, rec, f1, sup = skm.precision_recall_fscore_support(y, pred, labels=range(c), zero_division=0)
    report = M.per_class_report(cm)
    assert [r["precision"] for r in report] == pytest.approx(prec)
    assert [r["recall"] for r in report] == pytest.approx(rec)
    assert [r["f1"] for r in report] == pytest.approx(f1)
    assert [r["support"] for r in report] == sup.tolist()


def test_absent_class_is_left_out_of_mean_recall_like_sklearn():
    y = np.array([0, 0, 1, 1])  # class 2 never occurs but is predicted once
    p = np.array([0, 2, 1, 1])
    cm = M.confusion_matrix(y, p, 3)
    with pytest.warns(UserWarning):
        expected = skm.balanced_accuracy_score(y, p)
    assert M.mean_per_class_recall(cm) == pytest.approx(expected) == pytest.approx(0.75)


def test_expected_calibration_error_hand_computed():
    conf = np.array([0.9, 0.9, 0.6, 0.3])
    correct = np.array([1, 0, 1, 0])
    # bins (15): 0.9 -> bin 13 (acc .5, conf .9), 0.6 -> bin 8 (1 vs .6), 0.3 -> bin 4 (0 vs .3)
    out = M.expected_calibration_error(conf, correct)
    assert out["ece"] == pytest.approx(0.5 * 0.4 + 0.25 * 0.4 + 0.25 * 0.3)
    assert out["mce"] == pytest.approx(0.4)
    assert [b["count"] for b in out["bins"]][13] == 2
    assert sum(b["count"] for b in out["bins"]) == 4
    edges = M.expected_calibration_error(np.array([0.0, 1.0]), np.array([0, 1]))
    assert edges["bins"][0]["count"] == 1 and edges["bins"][14]["count"] == 1 and edges["ece"] == 0
    # A bin boundary belongs to the lower bin: 2/15 goes to bin 1.
    assert M.expected_calibration_error(np.array([2 / 15]), np.array([1]))["bins"][1]["count"] == 1


def test_ece_is_zero_when_calibrated():
    conf = np.full(10, 0.7)
    correct = np.array([1] * 7 + [0] * 3)
    assert M.expected_calibration_error(conf, correct)["ece"] == pytest.approx(0.0)


def test_top5_is_null_below_five_classes():
    y = np.array([0, 1, 2, 2])
    topk = np.array([[0, 1, 2], [2, 1, 0], [2, 0, 1], [1, 2, 0]])
    out, notes = classification_metrics(y, topk, np.array([0.5, 0.6, 0.7, 0.8]), ["a", "b", "c"])
    assert out["top5"] is None
    assert any("top5 is null" in n for n in notes)
    assert out["top1"] == pytest.approx(0.5)
    assert out["chance"] == {"uniform": pytest.approx(1 / 3), "majority": pytest.approx(0.5)}


def test_chunked_zero_shot_predictions_match_dense():
    rng = np.random.default_rng(1)
    weights = torch.nn.functional.normalize(torch.randn(9, 16), dim=-1)
    clf = ZeroShotClassifier([str(i) for i in range(9)], weights, logit_scale=30.0)
    feats = rng.normal(size=(23, 16)).astype(np.float32)
    top, conf = predict_chunked(feats, clf, k=5, chunk=4)
    dense = clf.logits(torch.from_numpy(feats))
    assert np.array_equal(top, dense.topk(5, dim=1).indices.numpy())
    assert np.allclose(conf, dense.softmax(1).max(1).values.numpy(), atol=1e-6)


def test_effective_robustness_is_residual_from_the_logit_fit():
    ids = np.array([0.5, 0.6, 0.7, 0.8])
    logit = np.log(ids / (1 - ids))
    shifted = 1 / (1 + np.exp(-(0.8 * logit - 0.5)))  # exactly on a line in logit space
    assert np.allclose(M.effective_robustness(ids, shifted), 0, atol=1e-9)
    bumped = shifted.copy()
    bumped[1] += 0.1
    er = M.effective_robustness(ids, bumped)
    assert er[1] > 0.05 and np.argmax(er) == 1
    with pytest.raises(ValueError, match="at least 3"):
        M.effective_robustness([0.5, 0.6], [0.4, 0.5])
