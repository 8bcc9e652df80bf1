"""PNG figures for evaluation results (matplotlib's Agg canvas; no global backend is changed)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..anomaly.base import heat_overlay
from .datasets import EvalDataset


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # optional (`plot`/`eval` extras)
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ValueError("plots need matplotlib: pip install matplotlib (or pass --no-plots)") from exc
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    return path


def plot_confusion(confusion: np.ndarray, classnames: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (colour = share of the true class).

    Counts are written in the cells up to 20 classes, class names on the axes up to 150; beyond
    that only the heat map is drawn (it stays readable as a pattern, names would not).
    """
    cm = np.asarray(confusion, np.float64)
    n = len(cm)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    side = 20.0 if n > 150 else max(4.5, 0.25 * n + 2.5)
    fig = _figure(side + 1.4, side)
    ax = fig.add_subplot()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    font = 8 if n <= 20 else 6
    if n <= 150:
        ax.set_xticks(range(n), [str(c) for c in classnames], rotation=90, fontsize=font)
        ax.set_yticks(range(n), [str(c) for c in classnames], fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i, j in zip(*np.nonzero(cm)):
            colour = "white" if share[i, j] > 0.5 else "black"
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=font, color=colour)
    ax.set_title(title or "confusion matrix", fontsize=10)
    return _save(fig, path)


def plot_reliability(calibration: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """Reliability diagram: per-bin accuracy vs confidence, with the ECE in the title."""
    bins = calibration["bins"]
    n = calibration["n_bins"]
    fig = _figure(4.6, 4.2)
    ax = fig.add_subplot()
    centers = (np.arange(n) + 0.5) / n
    acc = np.array([b["accuracy"] for b in bins])
    count = np.array([b["count"] for b in bins])
    ax.bar(centers[count > 0], acc[count > 0], width=1 / n, edgecolor="black", color="#4c72b0", label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (softmax max)")
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"{title}\nECE = {calibration['ece']:.3f} ({n} bins)".strip(), fontsize=10)
    return _save(fig, path)


def plot_few_shot(
    curve: Sequence[dict[str, Any]],
    zeroshot: float | None,
    path: str | Path,
    title: str = "",
    chance: float | None = None,
) -> Path:
    """Accuracy vs shots per class (mean ± std over seeds), zero-shot as the k=0 reference line."""
    shots = np.array([r["shots"] for r in curve], np.float64)
    mean = np.array([r["mean"] for r in curve])
    std = np.array([r["std"] for r in curve])
    fig = _figure(5.5, 4.0)
    ax = fig.add_subplot()
    ax.errorbar(shots, mean, yerr=std, marker="o", capsize=4, label="linear probe (mean ± std)")
    ax.fill_between(shots, mean - std, mean + std, alpha=0.2)
    if zeroshot is not None:
        ax.axhline(zeroshot, color="tab:red", linestyle="--", label=f"zero-shot (k=0): {zeroshot:.3f}")
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", label=f"chance (majority): {chance:.3f}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(shots, [str(int(s)) for s in shots])
    ax.set_xlabel("labelled images per class (k)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.9)
    ax.set_title(title or "few-shot linear probe", fontsize=10)
    return _save(fig, path)


def plot_robustness(table: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Bars of accuracy per variant (in-distribution first) for zero-shot and, if present, the probe."""
    names = [r["variant"] for r in table]
    heads = [h for h in ("zeroshot", "probe") if f"{h}_accuracy" in table[0]]
    fig = _figure(max(5.0, 0.9 * len(names) + 2), 3.8)
    ax = fig.add_subplot()
    width = 0.8 / len(heads)
    for k, head in enumerate(heads):
        x = np.arange(len(names)) + (k - (len(heads) - 1) / 2) * width
        vals = [r[f"{head}_accuracy"] for r in table]
        ax.bar(x, vals, width=width, label=head)
        for xi, v in zip(x, vals):
            ax.text(xi, v + 0.01, f"{v:.2f}", ha="center", fontsize=7)
    ax.set_xticks(range(len(names)), names, rotation=20)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title(title or "accuracy under distribution shift", fontsize=10)
    return _save(fig, path)


def _thumbnail(ax, image: np.ndarray, title: str, hit: bool) -> None:
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor("#2ca02c" if hit else "#bbbbbb")
        spine.set_linewidth(4 if hit else 0.8)
    ax.set_title(title, fontsize=7, color="#2ca02c" if hit else "black")


def plot_retrieval_grid(
    examples: Sequence[dict[str, Any]], dataset: EvalDataset, path: str | Path, title: str = ""
) -> Path:
    """One row per text query: the query, its top-k images (correct ones outlined in green), then the
    correct image with its rank, so a miss shows what should have been found."""
    k = max(len(e["top"]) for e in examples)
    rows = len(examples)
    height = 1.55 * rows + 0.8
    fig = _figure(1.9 + 1.5 * (k + 1) + 0.3, height)
    grid = fig.add_gridspec(
        rows,
        k + 2,
        width_ratios=[1.6] + [1] * k + [1.15],
        wspace=0.08,
        hspace=0.3,
        top=1 - 0.7 / height,
        bottom=0.02,
        left=0.01,
        right=0.99,
    )
    for r, ex in enumerate(examples):
        ax = fig.add_subplot(grid[r, 0])
        ax.axis("off")
        ax.text(0, 0.5, "\n".join(textwrap.wrap(ex["caption"], 24)), va="center", ha="left", fontsize=8)
        for c, (idx, score) in enumerate(zip(ex["top"], ex["scores"])):
            hit = int(idx) == ex["target"]
            _thumbnail(
                fig.add_subplot(grid[r, c + 1]),
                np.asarray(dataset.images.load(int(idx))),
                f"#{c + 1}  {score:.2f}" + ("  ✓" if hit else ""),
                hit,
            )
        if "target_rank" in ex:
            ax = fig.add_subplot(grid[r, k + 1])
            _thumbnail(
                ax, np.asarray(dataset.images.load(int(ex["target"]))), f"answer: rank {ex['target_rank']}", True
            )
            ax.patch.set_alpha(0)
    fig.suptitle(title or "text → image retrieval (green = correct image)", fontsize=10, y=1 - 0.15 / height)
    return _save(fig, path)


def plot_segmentation(
    examples: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], classnames: Sequence[str], path: str | Path,
    title: str = "",
) -> Path:
    """One row per image: the image, the true mask, the predicted mask (same colours), and a legend."""
    rows = len(examples)
    fig = _figure(6.2, 1.9 * rows + 0.6)
    k = len(classnames)
    for r, (image, truth, pred) in enumerate(examples):
        for c, (data, name) in enumerate(((image, "image"), (truth, "truth"), (pred, "prediction"))):
            ax = fig.add_subplot(rows, 3, 3 * r + c + 1)
            if c == 0:
                ax.imshow(data)
            else:
                shown = np.ma.masked_equal(np.asarray(data), 255)  # ignored pixels stay blank
                im = ax.imshow(shown, cmap="tab20", vmin=0, vmax=max(k - 1, 1), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=8)
    bar = fig.colorbar(im, ax=fig.axes, ticks=range(k), fraction=0.03)
    bar.ax.set_yticklabels(list(classnames), fontsize=6)
    fig.suptitle(title or "zero-shot segmentation", fontsize=9)
    return _save(fig, path)


def plot_anomaly(
    examples: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, float, bool]], path: str | Path, title: str = ""
) -> Path:
    """One row per image: the image, its true defect mask, and the anomaly heat map over the image."""
    rows = max(len(examples), 1)
    fig = _figure(6.0, 1.9 * rows + 0.5)
    heats = [e[2] for e in examples] or [np.zeros((1, 1))]
    lo, hi = float(min(h.min() for h in heats)), float(max(h.max() for h in heats))
    for r, (image, truth, heat, score, anomalous) in enumerate(examples):
        panels = ((image, "image"), (truth, "truth"), (heat, "anomaly map"))
        for c, (data, name) in enumerate(panels):
            ax = fig.add_subplot(rows, 3, 3 * r + c + 1)
            if c == 0:
                ax.imshow(data)
                ax.set_ylabel("defect" if anomalous else "good", fontsize=7)
            elif c == 1:
                ax.imshow(data, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(heat_overlay(Image.fromarray(image), data, lo, hi))
                ax.set_xlabel(f"score {score:.3f}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=8)
    fig.suptitle(title or "anomaly detection", fontsize=9)
    return _save(fig, path)
