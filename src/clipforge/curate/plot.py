"""The entry-count histogram of a curation run: how many entries have about c matching pairs, before
and after balancing, on log–log axes, with the threshold t marked (the head is cut down to about t,
the tail is left as it was)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..extras import require
from ..files import atomic_path


def check_plotting() -> None:
    """Fail early, with the install hint, when matplotlib is missing."""
    require(["matplotlib"], "curate")


def _save(fig: Any, path: str | Path) -> Path:
    """Write the figure as a PNG at `path` (atomically) and close it."""
    import matplotlib.pyplot as plt  # optional: the curate extra

    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def plot_entry_counts(before: np.ndarray, after: np.ndarray, t: float, path: str | Path) -> Path:
    """Write the histogram PNG to `path` (atomically) and return the path."""
    import matplotlib  # optional: the curate extra

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional: the curate extra
    from matplotlib.ticker import FuncFormatter

    before, after = np.asarray(before), np.asarray(after)
    top = max(int(before.max(initial=0)), 1)
    bins = np.unique(np.geomspace(1, top + 1, num=40).round().astype(np.int64))
    if len(bins) < 2:
        bins = np.array([1, 2])
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    ax.hist(before[before > 0], bins=bins.tolist(), histtype="step", linewidth=2.6, alpha=0.8, label="before balancing")
    ax.hist(after[after > 0], bins=bins.tolist(), histtype="step", linewidth=1.4, label="after balancing")
    ax.axvline(t, color="grey", linestyle="--", linewidth=1, label=f"t = {t:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain, blank = FuncFormatter(lambda value, _: f"{value:g}"), FuncFormatter(lambda value, _: "")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(blank)
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain if ax.get_ylim()[1] < 100 else blank)  # few decades: label 2, 3, 4 ...
    ax.set_xlabel("pairs matching the entry")
    ax.set_ylabel("entries")
    ax.set_title(f"MetaCLIP entry counts ({int((before > 0).sum())} entries matched)")
    ax.legend()
    return _save(fig, path)


def plot_histogram(values: np.ndarray, threshold: float | None, path: str | Path, xlabel: str, title: str) -> Path:
    """A histogram of per-row values (scores, similarities) with the threshold marked; PNG at `path`."""
    import matplotlib  # optional: the curate extra

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional: the curate extra

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    ax.hist(np.asarray(values, dtype=np.float64), bins=50, color="tab:blue", alpha=0.8)
    if threshold is not None:
        ax.axvline(threshold, color="tab:red", linestyle="--", linewidth=1.2, label=f"threshold {threshold:.3g}")
        ax.legend()
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rows")
    ax.set_title(title)
    return _save(fig, path)
