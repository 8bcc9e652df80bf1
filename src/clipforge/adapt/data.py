"""Few-shot sets and the backbone features adapters train on, with an on-disk feature cache.

`FewShotData` carries labels plus whatever a method needs: the images (pixel-level methods and
augmentation), un-normalised backbone features of the eval-preprocessed images, and features of
`V` augmented views (Tip-Adapter's cache, GDA, and the feature-level trainers). Features are
computed once per (backbone, images, augmentation) and cached as `.npy`, so the training-free and
feature-level methods run in seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Callable, Literal, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..data.cache import FeatureCache, digest, encoder_key, preprocess_fingerprint
from ..data.images import ImageSource, SubsetImages, as_image_source
from .base import Backbone

Images = ImageSource | Sequence[Image.Image]  # an image source, or PIL images in memory


def image_at(images: Images, index: int) -> Image.Image:
    return as_image_source(images).load(index)


def preprocess_images(backbone: Backbone, images: Images, indices: Sequence[int] | None = None) -> torch.Tensor:
    """Eval-preprocessed pixels [N, 3, n, n]."""
    idx = range(len(images)) if indices is None else indices
    return backbone.preprocess.batch([image_at(images, int(i)) for i in idx])


def augment_images(
    backbone: Backbone,
    images: Images,
    indices: Sequence[int],
    seeds: Sequence[int],
    scale: tuple[float, float] = (0.5, 1.0),
    hflip: bool = True,
) -> torch.Tensor:
    """RandomResizedCrop (+ flip) of `images[indices]`, one seed per image (reproducible, order-free).

    Labels must survive the augmentation: e.g. no flips (and only mild crops) for a left/right label.
    """
    tf = backbone.train_transform(scale=(scale[0], scale[1]), hflip=hflip)  # a list is fine
    return torch.stack([tf(image_at(images, int(i)), int(s)) for i, s in zip(indices, seeds)])


@dataclasses.dataclass
class FewShotData:
    """A labelled image set for fitting/evaluating adapters.

    `features` [N, d] and `views` [V, N, d] are un-normalised backbone image features of the
    eval-preprocessed images and of V augmented views; `pixels` [N, 3, n, n] are eval-preprocessed
    images. Any of them may be None; `ensure` fills in what a method needs.
    """

    labels: torch.Tensor
    images: Images | None = None
    features: torch.Tensor | None = None
    views: torch.Tensor | None = None
    pixels: torch.Tensor | None = None
    key: str | None = None  # identifies the images for the feature cache

    def __post_init__(self) -> None:
        self.labels = torch.as_tensor(np.asarray(self.labels), dtype=torch.long).reshape(-1)
        n = len(self.labels)
        for name in ("features", "pixels"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"{name} has {len(value)} rows for {n} labels")
        if self.views is not None and self.views.shape[1] != n:
            raise ValueError(f"views cover {self.views.shape[1]} images for {n} labels")
        if self.images is not None and len(self.images) != n:
            raise ValueError(f"{len(self.images)} images for {n} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> "FewShotData":
        """The same data restricted to `indices` (features and views are sliced, images wrapped lazily)."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        digest = hashlib.sha256(idx.numpy().tobytes()).hexdigest()[:16]
        return FewShotData(
            self.labels[idx],
            None if self.images is None else SubsetImages(as_image_source(self.images), tuple(idx.tolist())),
            None if self.features is None else self.features[idx],
            None if self.views is None else self.views[:, idx],
            None if self.pixels is None else self.pixels[idx],
            None if self.key is None else f"{self.key}[{digest}]",
        )

    def relabel(self, mapping: dict[int, int]) -> "FewShotData":
        """Keep only samples whose label is a key of `mapping`, with labels renumbered by it."""
        keep = [i for i, y in enumerate(self.labels.tolist()) if y in mapping]
        out = self.subset(keep)
        out.labels = torch.tensor([mapping[int(y)] for y in out.labels.tolist()], dtype=torch.long)
        return out

    def computed(self, name: Literal["features", "views", "pixels"]) -> torch.Tensor:
        """`features`, `views` or `pixels` once `ensure` has filled them in (ValueError before)."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"no {name}: call ensure(backbone, {name}=...) first")
        return value

    def need_images(self, method: str) -> Images:
        if self.images is None:
            raise ValueError(f"{method} needs the images of the few-shot set, not only features")
        return self.images

    def ensure(
        self,
        backbone: Backbone,
        features: bool = False,
        views: int = 0,
        pixels: bool = False,
        cache: "FeatureCache | None" = None,
        seed: int = 0,
        scale: tuple[float, float] = (0.5, 1.0),
        hflip: bool = True,
    ) -> "FewShotData":
        """Compute (or read from `cache`) whatever is missing; returns self. `scale`/`hflip`: view augmentation."""
        if features and self.features is None:
            self.features = compute_features(backbone, self.need_images("feature extraction"), cache, self.key)
        if views and (self.views is None or len(self.views) < views):
            images = self.need_images("augmented views")
            self.views = compute_views(backbone, images, views, seed, cache, self.key, scale, hflip)
        if pixels and self.pixels is None:
            self.pixels = preprocess_images(backbone, self.need_images("pixel input"))
        return self

    def view_features(self, epoch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Features to train on in one epoch: one random augmented view per image (or the plain features)."""
        if self.views is None:
            if self.features is None:
                raise ValueError("no features: call ensure(backbone, features=True) first")
            return self.features
        pick = torch.randint(len(self.views), (len(self),), generator=generator)
        return self.views[pick, torch.arange(len(self))]


def compute_features(
    backbone: Backbone, images: Images, cache: FeatureCache | None = None, key: str | None = None, batch: int = 256
) -> torch.Tensor:
    """Un-normalised backbone features [N, d] of eval-preprocessed images."""

    def run() -> torch.Tensor:
        starts = tqdm(range(0, len(images), batch), desc="image features", unit="batch", disable=not backbone.progress)
        out = [
            backbone.encode_pixels(preprocess_images(backbone, images, range(s, min(s + batch, len(images)))))
            for s in starts
        ]
        return torch.cat(out) if out else torch.zeros(0, backbone.embed_dim)

    if cache is None or key is None:
        return run()
    return _cached(cache, (backbone_key(backbone), key, "features"), run)


def compute_views(
    backbone: Backbone,
    images: Images,
    n_views: int,
    seed: int = 0,
    cache: FeatureCache | None = None,
    key: str | None = None,
    scale: tuple[float, float] = (0.5, 1.0),
    hflip: bool = True,
    batch: int = 256,
) -> torch.Tensor:
    """Features [V, N, d] of V RandomResizedCrop(scale) (+ flip) views per image (Tip-Adapter's cache recipe).

    View v of image i uses the seed `(seed, v, i)`. Compute views once for a pool and `subset` it.
    """

    def run() -> torch.Tensor:
        views = []
        bar = tqdm(total=n_views * len(images), desc="augmented views", unit="img", disable=not backbone.progress)
        for v in range(n_views):
            feats = []
            for s in range(0, len(images), batch):
                idx = list(range(s, min(s + batch, len(images))))
                seeds = [hash_seed(seed, v, i) for i in idx]
                feats.append(backbone.encode_pixels(augment_images(backbone, images, idx, seeds, scale, hflip)))
                bar.update(len(idx))
            views.append(torch.cat(feats) if feats else torch.zeros(0, backbone.embed_dim))
        bar.close()
        return torch.stack(views)

    if cache is None or key is None:
        return run()
    parts = (backbone_key(backbone), key, "views", n_views, seed, tuple(scale))
    return _cached(cache, parts + (() if hflip else ("no-flip",)), run)


def backbone_key(backbone: Backbone) -> str:
    """Weights, runtime and preprocessing of a backbone: who computed the cached features."""
    return digest(encoder_key(backbone.model), preprocess_fingerprint(backbone.preprocess))


def _cached(cache: FeatureCache, parts: tuple, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    return torch.from_numpy(np.array(cache.get(("adapt", *parts), lambda: compute().numpy())))


def hash_seed(*parts: int) -> int:
    """A deterministic 63-bit seed from integers (independent of Python's hash randomisation)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def materialize(images: Images) -> list[Image.Image]:
    """All images as a list (render/decode once before an epoch loop)."""
    return [image_at(images, i) for i in range(len(images))]
