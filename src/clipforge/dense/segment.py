"""Zero-shot semantic segmentation from dense features, and its metrics.

Per pixel: cosine of the (upsampled) dense feature with each class's prompt-ensembled text
embedding; the highest wins. Index 0 may be a background class: by name (a prompt like "the
background"), or by a threshold — pixels whose best class cosine stays below `background_threshold`
become 0. Metrics follow the usual protocol: one confusion matrix over every pixel of a dataset,
pixels labelled `ignore_index` (255) left out, IoU per class present in truth or prediction, mIoU
their mean, pixel accuracy over the counted pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.masks import IGNORE_INDEX
from ..model.clip import CLIP
from .features import encode_dense


@torch.no_grad()
def segment(
    model: CLIP,
    pixels: torch.Tensor,
    class_weights: torch.Tensor,
    method: str = "maskclip",
    background_threshold: float | None = None,
    size: tuple[int, int] | None = None,
    **dense_options: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels [N, H, W] int64, cosine scores [N, K, H, W]) for preprocessed `pixels` [N, 3, H, W].

    `class_weights` [K, d] are L2-normalised text embeddings (`zeroshot.classifier_weights`). With
    `background_threshold`, classes are numbered from 1 and pixels below it get 0. `size`: the
    output size (default: the input's), e.g. the original image's to score against its mask."""
    dense = encode_dense(model, pixels, method, normalize=True, **dense_options)  # [N, h, w, d]
    scores = torch.einsum("nhwd,kd->nkhw", dense, class_weights.to(dense))
    scores = F.interpolate(scores, size=size or pixels.shape[-2:], mode="bilinear", align_corners=False)
    best, labels = scores.max(dim=1)
    if background_threshold is not None:
        labels = torch.where(best < background_threshold, torch.zeros_like(labels), labels + 1)
    return labels, scores


@dataclass
class SegmentationScores:
    """A running confusion matrix (rows: truth, columns: prediction) over many images."""

    num_classes: int
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, prediction: np.ndarray, truth: np.ndarray) -> None:
        if prediction.shape != truth.shape:
            raise ValueError(f"prediction {prediction.shape} and truth {truth.shape} differ in shape")
        keep = truth != self.ignore_index
        t, p = truth[keep].astype(np.int64), prediction[keep].astype(np.int64)
        if t.size and (t.max() >= self.num_classes or t.min() < 0):
            raise ValueError(f"truth holds class {int(t.max())} but there are {self.num_classes} classes")
        if p.size and (p.max() >= self.num_classes or p.min() < 0):
            raise ValueError(f"prediction holds class {int(p.max())} but there are {self.num_classes} classes")
        self.confusion += np.bincount(t * self.num_classes + p, minlength=self.num_classes**2).reshape(
            self.num_classes, self.num_classes
        )

    def per_class_iou(self) -> list[float | None]:
        """IoU per class (None for a class absent from both truth and prediction)."""
        tp = np.diag(self.confusion)
        union = self.confusion.sum(0) + self.confusion.sum(1) - tp
        return [float(tp[c] / union[c]) if union[c] else None for c in range(self.num_classes)]

    def summary(self) -> dict[str, Any]:
        ious = [v for v in self.per_class_iou() if v is not None]
        total = self.confusion.sum()
        return {
            "miou": float(np.mean(ious)) if ious else 0.0,
            "pixel_accuracy": float(np.trace(self.confusion) / total) if total else 0.0,
            "per_class_iou": self.per_class_iou(),
            "pixels": int(total),
        }
