"""Zero-shot segmentation over an image + mask dataset (`clipforge.data.masks.MaskSource`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..config import PreprocessConfig
from ..data.masks import MaskSource
from ..model.clip import CLIP
from ..transforms import ImageTransform
from ..zeroshot import classifier_weights, resolve_templates
from .features import output_stride
from .segment import SegmentationScores, segment


def dense_pixels(model: CLIP, image: Image.Image) -> torch.Tensor:
    """[1, 3, H, W]: the image resized (aspect kept) so its short side is the model's input size and
    both sides are multiples of the output stride, normalised as the model expects."""
    transform = ImageTransform(model.config.preprocess or PreprocessConfig(model.config.vision.image_size))
    cell, size = output_stride(model), model.config.vision.image_size
    scale = size / min(image.size)
    width, height = (max(size, round(d * scale / cell) * cell) for d in image.size)
    return transform.to_tensor(image.resize((width, height), transform.resample)).unsqueeze(0)


@dataclass
class SegmentationRun:
    """Scores of one method on one dataset, and a few examples (image, truth, prediction) to plot."""

    method: str
    dataset: str
    classnames: list[str]
    summary: dict[str, Any]
    seconds: float
    examples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)


@torch.no_grad()
def segment_dataset(
    model: CLIP,
    tokenizer: Any,
    source: MaskSource,
    method: str = "maskclip",
    templates: str | Sequence[str] = "openai",
    max_samples: int | None = None,
    background_threshold: float | None = None,
    n_examples: int = 6,
    progress: bool = True,
) -> SegmentationRun:
    """Zero-shot segmentation of every image (class 0 is the background: a text class named by
    `source.classnames[0]`, or, with `background_threshold`, whatever no other class reaches)."""
    names = list(source.classnames)
    prompts = resolve_templates(templates)
    text = names[1:] if background_threshold is not None else names
    weights = classifier_weights(model, tokenizer, text, prompts)
    scores = SegmentationScores(len(names))
    n = len(source) if max_samples is None else min(len(source), max_samples)
    examples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    start = time.perf_counter()
    for i in tqdm(range(n), desc=f"segmenting ({method})", disable=not progress):
        image, truth, _ = source.load(i)
        pred = segment(model, dense_pixels(model, image), weights, method, background_threshold, truth.shape)[0]
        prediction = pred[0].cpu().numpy()
        scores.update(prediction, truth)
        if len(examples) < n_examples:
            examples.append((np.asarray(image.convert("RGB")), truth, prediction))
    summary = {**scores.summary(), "images": n}
    return SegmentationRun(method, source.name, names, summary, time.perf_counter() - start, examples)
