"""Linear probes on frozen image features (CLIP's protocol, METHODS §1) and few-shot sampling.

A scikit-learn `LogisticRegression` (lbfgs, L2, max_iter 1000) on *un-normalised* features. The
inverse regularisation C is chosen on a validation split: a coarse grid 1e-6 … 1e6, then log-space
bisection between the best grid point's neighbours; the winner is refit on train + val and scored
on test. CPU only, by design: the features are small and the solver is scikit-learn's.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

COARSE_GRID: tuple[float, ...] = (1e-6, 1e-4, 1e-2, 1.0, 1e2, 1e4, 1e6)
REFINE_STEPS = 8
MAX_ITER = 1000


def _logistic(C: float, max_iter: int, seed: int):
    try:
        from sklearn.linear_model import LogisticRegression  # optional (`eval` extra): only probes need scikit-learn
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ValueError("the linear probe needs scikit-learn: pip install scikit-learn") from exc
    return LogisticRegression(C=C, max_iter=max_iter, random_state=seed)


#: Below this many (samples x features x classes), BLAS runs single-threaded: lbfgs makes thousands of
#: tiny BLAS calls whose thread wake-ups cost 20x the arithmetic on a busy machine (measured 7 s vs 0.3 s).
SMALL_PROBLEM = 20_000_000


def _blas_threads(work: int):
    """Single-threaded BLAS/OpenMP for small fits; no change for big ones."""
    from threadpoolctl import threadpool_limits  # optional (`eval` extra, with scikit-learn)

    return threadpool_limits(limits=1) if work < SMALL_PROBLEM else contextlib.nullcontext()


@dataclass
class _Fitter:
    """Fits and scores probes, memoising validation accuracy per C and counting unconverged fits."""

    max_iter: int = MAX_ITER
    seed: int = 0
    unconverged: int = 0
    history: dict[float, float] = field(default_factory=dict)

    def fit(self, x: np.ndarray, y: np.ndarray, C: float):
        clf = _logistic(C, self.max_iter, self.seed)
        with warnings.catch_warnings(), _blas_threads(x.size * len(np.unique(y))):
            warnings.simplefilter("ignore")  # ConvergenceWarning is counted below instead
            clf.fit(x, y)
        if np.any(np.asarray(clf.n_iter_) >= self.max_iter):
            self.unconverged += 1
        return clf

    def val_accuracy(self, C: float, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray]) -> float:
        if C not in self.history:
            clf = self.fit(*train, C)
            self.history[C] = float((clf.predict(val[0]) == val[1]).mean())
        return self.history[C]


def search_C(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    grid: Sequence[float] = COARSE_GRID,
    steps: int = REFINE_STEPS,
    fitter: _Fitter | None = None,
) -> tuple[float, list[tuple[float, float]]]:
    """Best C by validation accuracy: coarse grid, then `steps` rounds of log-space bisection.

    The bracket starts at the best grid point's neighbours; each round moves the endpoint with the
    lower validation accuracy to the log-midpoint. Ties prefer the smaller C (more regularisation).
    Returns the best C and every (C, val accuracy) tried, in order of C.
    """
    fitter = fitter or _Fitter()
    grid = sorted(grid)
    accs = [fitter.val_accuracy(c, train, val) for c in grid]
    peak = int(np.argmax(accs))
    left, right = grid[max(peak - 1, 0)], grid[min(peak + 1, len(grid) - 1)]
    acc_l, acc_r = fitter.val_accuracy(left, train, val), fitter.val_accuracy(right, train, val)
    for _ in range(steps if left < right else 0):
        mid = 10 ** ((math.log10(left) + math.log10(right)) / 2)
        if acc_l < acc_r:
            left, acc_l = mid, fitter.val_accuracy(mid, train, val)
        else:
            right, acc_r = mid, fitter.val_accuracy(mid, train, val)
    tried = sorted(fitter.history.items())
    best = max(tried, key=lambda ca: (ca[1], -ca[0]))[0]
    return best, tried


def fit_probe(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    grid: Sequence[float] = COARSE_GRID,
    steps: int = REFINE_STEPS,
    seed: int = 0,
):
    """A fitted classifier: C searched on (train, val), then refit on train + val. Returns (clf, C)."""
    train, val = _as_xy(*train, "train"), _as_xy(*val, "val")
    fitter = _Fitter(seed=seed)
    best_C, _ = search_C(train, val, grid, steps, fitter)
    return fitter.fit(np.concatenate([train[0], val[0]]), np.concatenate([train[1], val[1]]), best_C), best_C


def _as_xy(x: np.ndarray, y: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, np.float32), np.asarray(y, np.int64)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"{name}: expected features [n, d] and n labels, got {x.shape} and {y.shape}")
    if len(x) == 0:
        raise ValueError(f"{name}: no samples")
    return x, y


def linear_probe(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    grid: Sequence[float] = COARSE_GRID,
    steps: int = REFINE_STEPS,
    refit_on_val: bool = True,
    max_iter: int = MAX_ITER,
    seed: int = 0,
) -> dict[str, Any]:
    """Choose C on (train, val), refit (on train + val unless `refit_on_val=False`), score on test.

    Returns C, validation and test accuracy, test predictions (and the top-5 ranked classes by
    probability, over the classes seen in training) and the search history.
    """
    train, val, test = _as_xy(*train, "train"), _as_xy(*val, "val"), _as_xy(*test, "test")
    if len(np.unique(train[1])) < 2:
        raise ValueError("the linear probe needs at least two classes in the training split")
    fitter = _Fitter(max_iter=max_iter, seed=seed)
    best_C, tried = search_C(train, val, grid, steps, fitter)
    fit_x, fit_y = train
    if refit_on_val:
        fit_x, fit_y = np.concatenate([train[0], val[0]]), np.concatenate([train[1], val[1]])
    clf = fitter.fit(fit_x, fit_y, best_C)
    with _blas_threads(test[0].size):
        ranked = np.asarray(clf.classes_)[np.argsort(-clf.predict_proba(test[0]), axis=1, kind="stable")]
    pred = ranked[:, 0]
    return {
        "C": best_C,
        "val_accuracy": fitter.history[best_C],
        "test_accuracy": float((pred == test[1]).mean()),
        "predictions": pred,
        "ranked_classes": ranked[:, :5],
        "search": [{"C": c, "val_accuracy": a} for c, a in tried],
        "n_fits": len(tried) + 1,
        "unconverged_fits": fitter.unconverged,
        "n_train": len(fit_y),
        "n_test": len(test[1]),
    }


def sample_shots(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Up to `k` indices per class, drawn without replacement (sorted)."""
    if k < 1:
        raise ValueError(f"shots must be >= 1, got {k}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    picks = [
        rng.choice(np.flatnonzero(labels == c), size=min(k, int((labels == c).sum())), replace=False)
        for c in np.unique(labels)
    ]
    return np.sort(np.concatenate(picks)) if picks else np.zeros(0, np.int64)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    v = np.asarray(values, np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
