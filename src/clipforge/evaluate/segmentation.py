"""The `segmentation` evaluation task: zero-shot semantic segmentation on an image + mask dataset.

`clipforge eval --task segmentation --dataset shapes:seg[:SPLIT][:N][?variety=rich]` (or a folder
with `images/` + `masks/`, or a COCO annotation file `FILE.json[::images=DIR]`; see
`clipforge.data.masks`) reports mIoU, pixel accuracy and per-class
IoU, with a PNG grid of image / truth / prediction. Options (`EvalConfig.extra`, or
`--eval-config`): `dense_method` (maskclip, naive, sclip, clearclip, naclip; default maskclip) and
`background_threshold` (default: the background is a text class named by the dataset).
"""

from __future__ import annotations

import time
from typing import Callable

from ..data.masks import MaskImages, MaskSource, open_mask_source
from ..dense import segment_dataset
from ..fast.encoder import plain_clip
from ..zeroshot import resolve_templates
from .config import EvalConfig
from .datasets import DatasetSource, EvalDataset
from .tasks import EvalResult, EvalTask, Evaluator, register_task


class MaskDataset(DatasetSource):
    """A mask source as an evaluation dataset: only the segmentation task applies (no image labels)."""

    def __init__(self, spec: str, source: MaskSource | None = None) -> None:
        self.mask_source = source if source is not None else open_mask_source(spec)
        self.name = self.mask_source.name or spec
        self.mask_classnames = list(self.mask_source.classnames)
        self.templates = ["a photo of a {}.", "a drawing of a {}.", "a {}."]

    @property
    def splits(self) -> tuple[str, ...]:
        return ("test",)

    def _load(self, split: str, shift: str | None, max_samples: int | None = None) -> EvalDataset:
        return EvalDataset(self.name, split, MaskImages(self.mask_source), fingerprint=f"masks:{self.name}")


def run_segmentation(
    ev: Evaluator, source: DatasetSource, test_set: Callable[[], EvalDataset], cfg: EvalConfig
) -> EvalResult:
    """Zero-shot segmentation of the dataset's masks with the evaluator's model and tokenizer."""
    if not isinstance(source, MaskDataset):
        raise ValueError(f"{source.name}: segmentation needs an image + mask dataset")
    start = time.perf_counter()
    method = str(cfg.extra.get("dense_method", "maskclip"))
    threshold = cfg.extra.get("background_threshold")
    templates = resolve_templates(cfg.templates) if cfg.templates is not None else list(source.templates or [])
    background = None if threshold is None else float(threshold)
    model, tokenizer = plain_clip(ev.model, "segmentation"), ev.features.tokenizer
    run = segment_dataset(model, tokenizer, source.mask_source, method, templates, cfg.max_samples, background,
                          progress=cfg.progress)
    summary = {"miou": run.summary["miou"], "pixel_accuracy": run.summary["pixel_accuracy"]}
    per_class = dict(zip(run.classnames, run.summary["per_class_iou"]))
    dataset = {"name": source.name, "split": "test", "n_images": run.summary["images"], "classes": run.classnames}
    params = {"dense_method": method, "background_threshold": threshold, "templates": templates}
    metrics = {**summary, "per_class_iou": per_class, "pixels": run.summary["pixels"]}
    artifacts = {"segmentation_examples": run.examples, "classnames": run.classnames}
    result = EvalResult("segmentation", dataset, summary, metrics, params, model=ev.model_info, artifacts=artifacts)
    result.wall_time_s = round(time.perf_counter() - start, 3)
    return result


register_task(
    "segmentation",
    EvalTask(run_segmentation, ("masks",), reads="own"),
    "zero-shot semantic segmentation from dense features: mIoU, pixel accuracy, per-class IoU",
)
