"""Training curves as a PNG: loss, learning rate, throughput and validation metrics against steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_curves(history: list[dict[str, Any]], path: str | Path) -> Path | None:
    """Write the curves; returns None when matplotlib is not installed or there is nothing to plot."""
    try:  # optional dependency (clipforge[plot]); training works without it
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # after choosing the non-interactive backend
    except ImportError:
        return None
    train = [r for r in history if "loss" in r]
    val = [r for r in history if any(k.startswith("val_") for k in r)]
    if not train:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    steps = [r["step"] for r in train]
    axes[0].plot(steps, [r["loss"] for r in train], color="tab:blue")
    axes[0].set(title="training loss", xlabel="step", yscale="log")
    axes[1].plot(steps, [r["lr"] for r in train], color="tab:orange")
    axes[1].set(title="learning rate", xlabel="step")
    keys = sorted({k for r in val for k in r if k.startswith("val_")})
    for key in keys:
        axes[2].plot([r["step"] for r in val], [r[key] for r in val], marker="o", label=key[4:])
    axes[2].set(title="validation", xlabel="step", ylim=(0, 1))
    if keys:
        axes[2].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
