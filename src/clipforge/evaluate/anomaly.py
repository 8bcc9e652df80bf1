"""Anomaly detection and segmentation on MVTec-layout datasets (`clipforge anomaly eval`).

Per category: fit the method on `shots` normal training images (a seeded choice), score every
test image, and report image AUROC / AP / F1-max and pixel AUROC / AP / AUPRO (pixel metrics are
accumulated image by image in bounded memory, `clipforge.anomaly.metrics`). Results: one JSON with
the metrics per category and their mean, plus a PNG grid (image / truth / heat map) per category.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..anomaly.base import AnomalyMethod, AnomalyScores, upsample_map
from ..anomaly.metrics import PixelScores, image_metrics
from ..data.anomaly import AnomalySet, categories
from ..files import write_json_atomic
from ..images import load_image

METRICS = ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_aupro")
Example = tuple[np.ndarray, np.ndarray, np.ndarray, float, bool]  # image, truth, map, score, anomalous


@dataclass
class CategoryResult:
    category: str
    method: str
    shots: int
    metrics: dict[str, Any]
    images: int
    seconds: float
    examples: list[Example] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {"category": self.category, "method": self.method, "shots": self.shots, "images": self.images,
                "seconds": round(self.seconds, 3), **self.metrics}


def choose_shots(dataset: AnomalySet, shots: int, seed: int = 0) -> list[Path]:
    """`shots` normal training images, a seeded random choice (the same for every method)."""
    train = dataset.split("train")
    if shots > len(train):
        raise ValueError(f"{dataset.root}: {shots} shots asked, but train/good holds {len(train)} images")
    order = np.random.default_rng(seed).permutation(len(train))[:shots]
    return [train[int(i)].path for i in sorted(order)]


def _pick_examples(labels: np.ndarray, n: int) -> set[int]:
    """Up to n test indices spread over the split: two thirds anomalous, the rest normal (or whatever exists)."""
    bad, good = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    n_bad = min(len(bad), max(n - n // 3, n - len(good)))
    picks = [bad[np.linspace(0, len(bad) - 1, n_bad).round().astype(int)]] if n_bad else []
    n_good = min(len(good), n - n_bad)
    picks += [good[np.linspace(0, len(good) - 1, n_good).round().astype(int)]] if n_good else []
    return {int(i) for part in picks for i in part}


def score_category(
    dataset: AnomalySet,
    method: AnomalyMethod,
    score: Callable[[list[Image.Image]], AnomalyScores] | None = None,
    batch_size: int = 8,
    n_examples: int = 6,
    progress: bool = True,
) -> CategoryResult:
    """Score the test split with a fitted `method` (or `score`, e.g. precomputed views) and measure."""
    score = score or method.score
    items = dataset.split("test")
    labels = dataset.labels("test")
    pixels = PixelScores()
    image_scores = np.zeros(len(items), dtype=np.float64)
    show = _pick_examples(labels, n_examples)
    examples: list[Example] = []
    start = time.perf_counter()
    bar = tqdm(total=len(items), desc=f"{dataset.category} ({method.name}, {method.shots}-shot)", disable=not progress)
    for i in range(0, len(items), batch_size):
        images = [load_image(item.path) for item in items[i : i + batch_size]]
        out = score(images)
        for j, image in enumerate(images):
            index = i + j
            image_scores[index] = float(out.image[j])
            height, width = image.height, image.width
            mask = dataset.mask("test", index) if labels[index] else np.zeros((height, width), dtype=bool)
            if mask is not None and mask.shape != (height, width):  # a mask saved at another size: fit it
                mask = np.asarray(Image.fromarray(mask).resize((width, height), Image.Resampling.NEAREST))
            heat = upsample_map(out.maps[j], (height, width), method.map_sigma)
            if mask is not None:
                pixels.update(heat, mask)
            if index in show:
                truth = mask if mask is not None else np.zeros((height, width), dtype=bool)
                examples.append((np.asarray(image), truth, heat, image_scores[index], bool(labels[index])))
        bar.update(len(images))
    bar.close()
    seconds = time.perf_counter() - start
    metrics = {**image_metrics(image_scores, labels), **pixels.summary(), "images_per_s": len(items) / seconds}
    if dataset.missing_masks:
        metrics["missing_masks"] = len(dataset.missing_masks)
    return CategoryResult(str(dataset.category), method.name, method.shots, metrics, len(items), seconds, examples)


def mean_row(results: Sequence[CategoryResult]) -> dict[str, Any]:
    """The metrics' mean over categories (a metric undefined somewhere is averaged where defined)."""
    row: dict[str, Any] = {"category": "mean", "images": sum(r.images for r in results)}
    for key in METRICS:
        values = [r.metrics[key] for r in results if r.metrics.get(key) is not None]
        row[key] = float(np.mean(values)) if values else None
    return row


def evaluate_anomaly(
    root: str | Path,
    make_method: Callable[[str], AnomalyMethod],
    out_dir: str | Path,
    shots: int = 0,
    category_names: Sequence[str] | None = None,
    seed: int = 0,
    plots: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate `make_method(category)` on every category under `root`; writes `anomaly.json` and,
    with `plots`, `CATEGORY.png` grids into `out_dir`. Returns the JSON's content."""
    out = Path(out_dir)
    names = list(category_names or categories(root))
    results: list[CategoryResult] = []
    for name in names:
        dataset = AnomalySet(root, category=name)
        method = make_method(name)
        method.fit([load_image(p) for p in choose_shots(dataset, shots, seed)])
        result = score_category(dataset, method, progress=progress)
        results.append(result)
        if plots:
            from .plots import plot_anomaly  # matplotlib: the plot/eval extras

            title = f"{name}: {method.name}, {shots}-shot"
            plot_anomaly(result.examples, out / f"{name}.png", title)
    report = {
        "root": str(root),
        "method": results[0].method if results else None,
        "shots": shots,
        "seed": seed,
        "categories": [r.row() for r in results],
        "mean": mean_row(results),
    }
    write_json_atomic(out / "anomaly.json", report)
    return report

