"""What the anomaly methods see of an image: windows, patches and mid-level feature maps.

Images are resized to a square working resolution and normalised once; every view is cut from
that tensor. A *window* is a k×k-cell crop of a grid laid over the image, resized to the model's
input and embedded by the image tower (WinCLIP's windows; cropping pixels rather than masking ViT
tokens makes them work for ResNet towers too). Window scores become a per-cell map by harmonic
averaging over the windows covering each cell.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from ..config import PreprocessConfig
from ..data.embedding import encode_pixels
from ..dense.features import encode_dense, output_stride
from ..model.clip import CLIP
from ..model.vision import ModifiedResNet, VisionTransformer
from ..runtime.protocol import Encoder
from ..transforms import ImageTransform


def input_size(model: CLIP) -> int:
    return model.config.vision.image_size


def working_pixels(model: CLIP, images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """[N, 3, size, size]: each image resized (squashed, as inspection images are square) and normalised."""
    transform = ImageTransform(model.config.preprocess or PreprocessConfig(input_size(model)))
    rows = [transform.to_tensor(image.convert("RGB").resize((size, size), transform.resample)) for image in images]
    return torch.stack(rows).to(model.device, model.dtype)


def resize_to_input(model: CLIP, pixels: torch.Tensor) -> torch.Tensor:
    n = input_size(model)
    if pixels.shape[-1] == n and pixels.shape[-2] == n:
        return pixels
    return F.interpolate(pixels.float(), size=(n, n), mode="bilinear", antialias=True, align_corners=False).to(
        pixels.dtype
    )


@torch.no_grad()
def image_embeddings(
    model: CLIP, pixels: torch.Tensor, encoder: Encoder | None = None, batch_size: int = 256
) -> torch.Tensor:
    """[N, embed_dim] (float32, on `pixels`' device), L2-normalised: each image (or crop) resized to the
    model's input and embedded by `encoder` (a fast engine of `model`, say) or `model`."""
    encoder = model if encoder is None else encoder
    chunks = [encode_pixels(encoder, resize_to_input(model, c), normalize=True) for c in pixels.split(batch_size)]
    return torch.cat(chunks).to(pixels.device)


def window_boxes(grid: int, k: int, stride: int = 1) -> list[tuple[int, int]]:
    """Top-left cells of every k×k window on a grid×grid grid (the last row/column always included)."""
    if not 1 <= k <= grid:
        raise ValueError(f"a window of {k} cells does not fit a grid of {grid}")
    if not 1 <= stride <= k:
        raise ValueError(f"a window stride of {stride} cells leaves cells of the grid uncovered by {k}-cell windows")
    starts = list(range(0, grid - k + 1, stride))
    if starts[-1] != grid - k:
        starts.append(grid - k)
    return [(top, left) for top in starts for left in starts]


@torch.no_grad()
def window_embeddings(
    model: CLIP, pixels: torch.Tensor, grid: int, k: int, stride: int = 1, encoder: Any = None
) -> torch.Tensor:
    """[N, n_windows, embed_dim], L2-normalised, windows in `window_boxes` order."""
    size = pixels.shape[-1]
    if size % grid:
        raise ValueError(f"the working size {size} is not a multiple of the grid {grid}")
    cell = size // grid
    boxes = window_boxes(grid, k, stride)
    crops = torch.stack([pixels[:, :, t * cell : (t + k) * cell, x * cell : (x + k) * cell] for t, x in boxes], 1)
    n = pixels.shape[0]
    return image_embeddings(model, crops.flatten(0, 1), encoder).view(n, len(boxes), -1)


def harmonic_aggregate(scores: torch.Tensor, grid: int, k: int, stride: int = 1) -> torch.Tensor:
    """[N, grid, grid]: per cell, the harmonic mean of the scores [N, n_windows] of the windows covering it."""
    n = scores.shape[0]
    inverse = torch.zeros(n, grid, grid, dtype=torch.float64, device=scores.device)
    count = torch.zeros(grid, grid, dtype=torch.float64, device=scores.device)
    for w, (top, left) in enumerate(window_boxes(grid, k, stride)):
        inverse[:, top : top + k, left : left + k] += 1.0 / scores[:, w, None, None].double().clamp_min(1e-12)
        count[top : top + k, left : left + k] += 1
    return (count / inverse).float()


def harmonic_mean(maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """Cell-wise harmonic mean of equally shaped maps (WinCLIP's cross-scale aggregation)."""
    inverse = torch.stack([1.0 / m.clamp_min(1e-12) for m in maps]).sum(dim=0)
    return len(maps) / inverse


@torch.no_grad()
def patch_embeddings(model: CLIP, pixels: torch.Tensor) -> torch.Tensor:
    """[N, h, w, embed_dim], L2-normalised: the MaskCLIP dense readout (`clipforge.dense`) at the
    working resolution (windows of the model's input: tiles where they fit, else overlapping), or of
    the image resized to the input when the working size is not a multiple of the output stride."""
    cell, window = output_stride(model), input_size(model)
    if pixels.shape[-1] % cell or pixels.shape[-1] < window:
        pixels = resize_to_input(model, pixels)
    size = pixels.shape[-1]
    stride = window if (size - window) % window == 0 else None  # tiles when they fit exactly: fewer passes
    return encode_dense(model, pixels, "maskclip", stride=stride, normalize=True)


@torch.no_grad()
def mid_level_maps(model: CLIP, pixels: torch.Tensor) -> torch.Tensor:
    """[N, h, w, C]: PatchCore's features — two mid-depth maps of the image tower, each averaged over
    its 3×3 neighbourhood, the deeper one upsampled to the shallower's grid, concatenated.

    ResNet: stages 2 and 3 at the working resolution (strides 8 and 16). ViT: the patch tokens after
    blocks L/2 and 3L/4 of the image resized to the model's input."""
    visual = model.visual
    if isinstance(visual, ModifiedResNet):
        maps = visual.stages(pixels)[1:3]
    elif isinstance(visual, VisionTransformer):
        x = visual.tokens(resize_to_input(model, pixels))
        blocks = list(visual.transformer.resblocks)
        keep = {max(0, len(blocks) // 2 - 1), max(0, (3 * len(blocks)) // 4 - 1)}
        grid = input_size(model) // output_stride(model)
        maps = []
        for i, block in enumerate(blocks):
            x = block(x)
            if i in keep:
                maps.append(x[:, visual.prefix :].transpose(1, 2).reshape(x.shape[0], -1, grid, grid))
        maps = maps if len(maps) == 2 else maps * 2
    else:
        raise TypeError(f"mid-level features: unknown image tower {type(visual).__name__}")
    pooled = [F.avg_pool2d(m.float(), 3, stride=1, padding=1, count_include_pad=False) for m in maps]
    size = pooled[0].shape[-2:]
    pooled[1] = F.interpolate(pooled[1], size=size, mode="bilinear", align_corners=False)
    return torch.cat(pooled, dim=1).permute(0, 2, 3, 1)
