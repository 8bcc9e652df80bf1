"""CLIP image preprocessing in plain PIL + torch (no torchvision), bit-exact with the reference.

`ImageTransform` reproduces OpenAI CLIP's eval pipeline
`Compose([Resize(n, BICUBIC), CenterCrop(n), convert("RGB"), ToTensor(), Normalize(mean, std)])`
as torchvision runs it on PIL images:

* Resize: shortest side -> n, long side -> `int(n * long / short)` (truncation); untouched if the
  size already matches. Resampling is Pillow's `Image.resize`, in the image's *own* mode.
* CenterCrop: offset `int(round((size - n) / 2.0))` per axis -- Python's round, ties to even, so an
  excess of 3 pixels crops from offset 2. Axes smaller than n are zero-padded with
  `(n - size) // 2` before (torchvision's padding split).
* RGB conversion happens after the crop, exactly where OpenAI does it. For images that are not
  already RGB this is observable, because Pillow resizes "P" and "1" images with NEAREST whatever
  filter is asked for and resizes "RGBA"/"LA" with premultiplied alpha. Images from
  `clipforge.images.load_image` are already RGB, so none of that applies to them.
* ToTensor + Normalize: float32 `x / 255`, then `(x - mean) / std` in float32.

Output is bounded whatever the input: the reference resizes the whole image before cropping, so a
200000 x 1 sliver would become 12.8M x 64 pixels at n = 64. When that intermediate would exceed
`MAX_RESIZE_PIXELS`, only the region the centre crop keeps is resampled (Pillow's `box=`): the
output is n x n with the same filter and geometry, equal to the reference within a few grey levels
(Pillow takes the box in float32). Every image within `clipforge.images.DEFAULT_MAX_ASPECT_RATIO`
at n <= 289 takes the exact path.

Hugging Face's `CLIPImageProcessor` (PIL backend, transformers 5.x) differs in two documented ways:
it crops from `(size - n) // 2` (floor, so a one-pixel shift whenever the excess is 3 mod 4) and it
composites transparent images onto white before resizing. Everything else agrees bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image

from .config import PreprocessConfig
from .images import load_image, to_rgb

__all__ = [
    "ImageInput",
    "MAX_RESIZE_PIXELS",
    "ImageTransform",
    "TrainTransform",
    "center_crop",
    "center_crop_box",
    "denormalize",
    "random_resized_crop_params",
    "resize_crop_shortest",
    "resize_shortest",
    "resize_shortest_size",
    "to_pil",
]

ImageInput = Union[Image.Image, np.ndarray, str, Path]

#: Largest image (in pixels; ~32 MB as Pillow stores RGB) the exact resize-then-crop may create.
MAX_RESIZE_PIXELS = 2**23

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
# Modes that `convert("RGB")` would clip to 8 bits; these are scaled to RGB before anything else.
_HIGH_DEPTH_MODES = frozenset({"I", "F", "I;16", "I;16L", "I;16B", "I;16N"})


def _resample(config: PreprocessConfig) -> Image.Resampling:
    try:
        return _RESAMPLE[config.interpolation]
    except KeyError:
        raise ValueError(f"interpolation must be 'bicubic' or 'bilinear', got {config.interpolation!r}") from None


def to_pil(image: ImageInput) -> Image.Image:
    """Accept a PIL image, a uint8 array (HW, HWC with C in 1/3/4) or a path (via `load_image`)."""
    if isinstance(image, Image.Image):
        pil = image
    elif isinstance(image, (str, Path)):
        pil = load_image(image)
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(f"numpy images must be uint8 HWC, got dtype {image.dtype}")
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
            raise ValueError(f"numpy images must be HW or HWC with 1, 3 or 4 channels, got shape {image.shape}")
        pil = Image.fromarray(np.ascontiguousarray(image))
    else:
        raise TypeError(f"expected a PIL image, uint8 numpy array or path, got {type(image).__name__}")
    if pil.width < 1 or pil.height < 1:
        raise ValueError(f"cannot preprocess an empty image of size {pil.size}")
    if pil.mode in _HIGH_DEPTH_MODES:
        pil = to_rgb(pil)
    return pil


def resize_shortest_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) after torchvision's `Resize(size)`: short side -> size, long side truncated."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def resize_shortest(image: Image.Image, size: int, resample: int = Image.Resampling.BICUBIC) -> Image.Image:
    """torchvision `Resize(size)` on a PIL image (returned as is when already the right size)."""
    new = resize_shortest_size(image.width, image.height, size)
    return image if new == image.size else image.resize(new, resample)


def resize_crop_shortest(
    image: Image.Image, size: int, resample: int = Image.Resampling.BICUBIC, max_pixels: int = MAX_RESIZE_PIXELS
) -> Image.Image:
    """torchvision `Resize(size)` then `CenterCrop(size)`, never creating more than `max_pixels` pixels.

    Exact (bit for bit) when the resized image fits in `max_pixels`; otherwise only the part the crop
    keeps is resampled, with the reference's geometry (within a few grey levels of it).
    """
    new_w, new_h = resize_shortest_size(image.width, image.height, size)
    if new_w * new_h <= max_pixels:
        return center_crop(resize_shortest(image, size, resample), size)
    left, top, right, bottom = center_crop_box(new_w, new_h, size)  # within the resized image: long >= short
    if (new_w, new_h) == image.size:
        return image.crop((left, top, right, bottom))
    sx, sy = image.width / new_w, image.height / new_h
    return image.resize((size, size), resample, box=(left * sx, top * sy, right * sx, bottom * sy))


def _crop_offset(length: int, size: int) -> int:
    if length >= size:
        return int(round((length - size) / 2.0))
    return -((size - length) // 2)  # torchvision pads (size - length) // 2 before, the rest after


def center_crop_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """PIL crop box (left, top, right, bottom) of torchvision's `CenterCrop(size)`.

    Negative offsets mean padding: PIL fills the outside of the image with zeros, which is what
    torchvision's pad-then-crop produces.
    """
    left, top = _crop_offset(width, size), _crop_offset(height, size)
    return left, top, left + size, top + size


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """torchvision `CenterCrop(size)` on a PIL image, including zero padding of small images."""
    if image.size == (size, size):
        return image
    return image.crop(center_crop_box(image.width, image.height, size))


def _to_tensor(image: Image.Image, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """RGB conversion, ToTensor (/255 in float32) and Normalize, as in the reference."""
    if image.mode != "RGB":
        image = to_rgb(image)
    array = np.array(image, dtype=np.uint8, copy=True)
    x = torch.from_numpy(array).permute(2, 0, 1).to(torch.float32).div_(255.0)
    return x.sub_(mean).div_(std)


def _stats(config: PreprocessConfig) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(config.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(config.std, dtype=torch.float32).view(3, 1, 1)
    return mean, std


class ImageTransform:
    """Eval preprocessing: image -> float32 tensor [3, n, n], identical to OpenAI CLIP's `preprocess`.

    `resize_mode="shortest"` resizes the short side then centre-crops (the reference);
    `"squash"` resizes straight to n x n, ignoring aspect ratio (OpenCLIP's squash mode).
    """

    def __init__(self, config: PreprocessConfig) -> None:
        if config.resize_mode not in ("shortest", "squash"):
            raise ValueError(f"resize_mode must be 'shortest' or 'squash', got {config.resize_mode!r}")
        if config.image_size < 1:
            raise ValueError(f"image_size must be positive, got {config.image_size}")
        self.config = config
        self.size = config.image_size
        self.resample = _resample(config)
        self.mean, self.std = _stats(config)

    def __repr__(self) -> str:
        c = self.config
        return f"ImageTransform(size={c.image_size}, mode={c.resize_mode}, interpolation={c.interpolation})"

    def resize_crop(self, image: ImageInput) -> Image.Image:
        """The geometric part only: the n x n PIL image that gets normalised (mode not yet RGB)."""
        pil = to_pil(image)
        n = self.size
        if self.config.resize_mode == "squash":
            return pil if pil.size == (n, n) else pil.resize((n, n), self.resample)
        return resize_crop_shortest(pil, n, self.resample)

    def __call__(self, image: ImageInput) -> torch.Tensor:
        return self.to_tensor(self.resize_crop(image))

    def to_tensor(self, image: Image.Image) -> torch.Tensor:
        """The photometric part only: RGB, /255 and the model's mean/std, at the image's own size."""
        return _to_tensor(image, self.mean, self.std)

    def batch(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """Stack several images into [N, 3, n, n] (N may be 0)."""
        if len(images) == 0:
            return torch.empty(0, 3, self.size, self.size, dtype=torch.float32)
        return torch.stack([self(image) for image in images])


def random_resized_crop_params(
    width: int,
    height: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """torchvision `RandomResizedCrop.get_params`: (top, left, h, w), same draws, same order.

    Ten attempts at an area fraction uniform in `scale` and an aspect ratio log-uniform in `ratio`;
    if none fits, the largest centre crop whose ratio is clamped to `ratio`. With
    `generator=None` the global torch RNG is consumed exactly as torchvision would.
    """
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        log_aspect = torch.empty(1).uniform_(log_ratio[0].item(), log_ratio[1].item(), generator=generator)
        aspect = torch.exp(log_aspect).item()  # float32 exp, as torchvision computes it
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, size=(1,), generator=generator).item())
            left = int(torch.randint(0, width - w + 1, size=(1,), generator=generator).item())
            return top, left, h, w
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class TrainTransform:
    """Training augmentation: RandomResizedCrop -> n x n, optional horizontal flip, normalise.

    Matches OpenCLIP's train transform (`RandomResizedCrop(n, scale=(0.9, 1.0))` with the
    configured interpolation, then RGB, ToTensor, Normalize) plus an optional flip (p=0.5).
    Randomness comes from, in order of precedence: the `generator` passed to `__call__` (a
    `torch.Generator` or an int seed), the transform's own generator when built with `seed`, else
    the global torch RNG (then draws match torchvision's under the same `torch.manual_seed`).
    For exact resume, derive a per-sample seed from (epoch, index) and pass it per call; this also
    avoids a trap of the owned generator, which every DataLoader worker receives as an identical
    copy (workers would then repeat each other's crops).
    """

    def __init__(
        self,
        config: PreprocessConfig,
        scale: tuple[float, float] = (0.9, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: bool = False,
        seed: int | None = None,
    ) -> None:
        if not (0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
        if not (0 < ratio[0] <= ratio[1]):
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {ratio}")
        self.config = config
        self.size = config.image_size
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.hflip = hflip
        self.resample = _resample(config)
        self.mean, self.std = _stats(config)
        self.generator: torch.Generator | None = None
        if seed is not None:
            self.generator = torch.Generator().manual_seed(int(seed))

    def __repr__(self) -> str:
        return f"TrainTransform(size={self.size}, scale={self.scale}, ratio={self.ratio}, hflip={self.hflip})"

    def _generator(self, generator: torch.Generator | int | None) -> torch.Generator | None:
        if generator is None:
            return self.generator
        if isinstance(generator, torch.Generator):
            return generator
        if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
            return torch.Generator().manual_seed(int(generator))
        raise TypeError(f"generator must be a torch.Generator, an int seed or None, got {type(generator).__name__}")

    def augment(self, image: ImageInput, generator: torch.Generator | int | None = None) -> Image.Image:
        """The geometric part only: the randomly cropped, resized (and maybe flipped) PIL image."""
        gen = self._generator(generator)
        pil = to_pil(image)
        top, left, h, w = random_resized_crop_params(pil.width, pil.height, self.scale, self.ratio, gen)
        n = self.size
        out = pil.crop((left, top, left + w, top + h))
        if out.size != (n, n):
            out = out.resize((n, n), self.resample)
        if self.hflip and torch.rand(1, generator=gen).item() < 0.5:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return out

    def __call__(self, image: ImageInput, generator: torch.Generator | int | None = None) -> torch.Tensor:
        return _to_tensor(self.augment(image, generator), self.mean, self.std)

    def batch(self, images: Sequence[ImageInput], generator: torch.Generator | int | None = None) -> torch.Tensor:
        """Augment several images with one random stream (an int seed seeds the whole batch)."""
        gen = self._generator(generator)
        if len(images) == 0:
            return torch.empty(0, 3, self.size, self.size, dtype=torch.float32)
        return torch.stack([self(image, gen) for image in images])


def denormalize(tensor: torch.Tensor, config: PreprocessConfig) -> np.ndarray:
    """Undo Normalize/ToTensor for plotting: [3,H,W] -> uint8 [H,W,3] (or [N,3,H,W] -> [N,H,W,3])."""
    if tensor.ndim not in (3, 4) or tensor.shape[-3] != 3:
        raise ValueError(f"expected a [3,H,W] or [N,3,H,W] tensor, got shape {tuple(tensor.shape)}")
    x = tensor.detach().to("cpu", torch.float32)
    mean, std = _stats(config)
    x = (x * std + mean).mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return x.movedim(-3, -1).contiguous().numpy()
