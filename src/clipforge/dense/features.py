"""Text-aligned dense features: a CLIP image tower's per-patch embeddings in the joint space.

`encode_dense(model, pixels)` → [N, H', W', embed_dim] (un-normalised, like `encode_image`), by
changing only the image tower's *last* block, training-free:

| method      | last ViT block, per token x (LN₁, LN₂, ln_post and the projection are the model's own)      |
| ----------- | ------------------------------------------------------------------------------------------- |
| `naive`     | unchanged: the full block, then ln_post + proj on every patch token                         |
| `maskclip`  | value path only (MaskCLIP): z = x + W_o v(LN₁x); z = z + MLP(LN₂z)                            |
| `sclip`     | correlative self-attention (SCLIP): z = x + W_o [(softmax(qqᵀ) + softmax(kkᵀ)) v], no MLP      |
| `clearclip` | q–q attention, no residual, no MLP (ClearCLIP): z = W_o softmax(qqᵀ) v                          |
| `naclip`    | k–k attention plus a Gaussian neighbourhood prior on the patch grid (NACLIP), no residual/MLP |

(Attention logits are scaled by 1/√d_head as in the model; the class token takes part as usual.)
A ResNet tower supports `maskclip`: the attention pool's value and output projections applied to
every position of the final feature map as 1×1 convolutions. Images larger than the model's input
are read by sliding windows of the input size (`stride` in pixels, a multiple of the output stride);
overlapping windows are averaged on the full image's patch grid. `upsample` resizes bilinearly.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ..model.clip import CLIP
from ..model.layers import Attention, ResidualBlock
from ..model.vision import ModifiedResNet, VisionTransformer
from ..registry import Registry

#: a ViT readout: (last block, tokens [N, 1 + HW, width], patch grid) → tokens after the block
LastBlock = Callable[[ResidualBlock, torch.Tensor, tuple[int, int]], torch.Tensor]

#: dense readouts by name (the table above); register a `LastBlock` to try a variant everywhere
#: (`encode_dense`, `segment`, `clipforge segment --method`)
METHODS: Registry[LastBlock] = Registry("dense method")
RESNET_METHODS = ("maskclip",)
NACLIP_SIGMA = 5.0  # the Gaussian prior's standard deviation, in patches (NACLIP's default)


def output_stride(model: CLIP) -> int:
    """Pixels per dense feature cell: the ViT's patch size or the ResNet's 32."""
    visual = model.visual
    return visual.cfg.patch_size if isinstance(visual, VisionTransformer) else 32


def _split_heads(attn: Attention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    b, n, d = x.shape
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.view(b, n, 3, attn.heads, d // attn.heads).permute(2, 0, 3, 1, 4)
    return q, k, v


def _merge_heads(attn: Attention, out: torch.Tensor) -> torch.Tensor:
    b, h, n, dh = out.shape
    return attn.out_proj(out.transpose(1, 2).reshape(b, n, h * dh))


def _self_softmax(a: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    logits = (a @ a.transpose(-1, -2)) / math.sqrt(a.shape[-1])
    return (logits if bias is None else logits + bias).softmax(dim=-1)


def _neighbourhood_bias(
    grid: tuple[int, int], sigma: float, device: torch.device, dtype: torch.dtype, prefix: int = 1
) -> torch.Tensor:
    """[prefix + HW, prefix + HW] log-Gaussian prior over patch distances (0 for a class token's row/column)."""
    gh, gw = grid
    ys, xs = torch.meshgrid(torch.arange(gh, device=device), torch.arange(gw, device=device), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], dim=1).to(dtype)
    bias = torch.zeros(prefix + gh * gw, prefix + gh * gw, device=device, dtype=dtype)
    bias[prefix:, prefix:] = -torch.cdist(pos, pos).square() / (2 * sigma**2)
    return bias


@METHODS.register("maskclip")
def _maskclip(block: ResidualBlock, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """value path only (MaskCLIP)"""
    z = x + _merge_heads(block.attn, _split_heads(block.attn, block.ln_1(x))[2])
    return z + block.mlp(block.ln_2(z))


@METHODS.register("naive")
def _naive(block: ResidualBlock, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """the unchanged last block on every patch token"""
    return block(x)


@METHODS.register("sclip")
def _sclip(block: ResidualBlock, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """correlative self-attention, no MLP (SCLIP)"""
    q, k, v = _split_heads(block.attn, block.ln_1(x))
    return x + _merge_heads(block.attn, (_self_softmax(q) + _self_softmax(k)) @ v)


@METHODS.register("clearclip")
def _clearclip(block: ResidualBlock, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """q-q attention, no residual, no MLP (ClearCLIP)"""
    q, _, v = _split_heads(block.attn, block.ln_1(x))
    return _merge_heads(block.attn, _self_softmax(q) @ v)


@METHODS.register("naclip")
def _naclip(block: ResidualBlock, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """k-k attention with a Gaussian neighbourhood prior, no residual, no MLP (NACLIP)"""
    _, k, v = _split_heads(block.attn, block.ln_1(x))
    bias = _neighbourhood_bias(grid, NACLIP_SIGMA, x.device, k.dtype, prefix=x.shape[1] - grid[0] * grid[1])
    return _merge_heads(block.attn, _self_softmax(k, bias) @ v)


def _vit_dense(visual: VisionTransformer, pixels: torch.Tensor, readout: LastBlock) -> torch.Tensor:
    grid = (pixels.shape[-2] // visual.cfg.patch_size, pixels.shape[-1] // visual.cfg.patch_size)
    x = visual.tokens(pixels)
    *first, last = visual.transformer.blocks
    for block in first:
        x = block(x)
    x = readout(last, x, grid)
    patches = visual.patch_features(x)
    return patches.reshape(pixels.shape[0], *grid, -1)


def _resnet_dense(visual: ModifiedResNet, pixels: torch.Tensor) -> torch.Tensor:
    pool = visual.attnpool
    fmap = visual.feature_map(pixels).permute(0, 2, 3, 1)  # [N, h, w, C]
    return pool.c_proj(pool.v_proj(fmap))


def _dense_once(model: CLIP, pixels: torch.Tensor, method: str) -> torch.Tensor:
    if isinstance(model.visual, VisionTransformer):
        if model.visual.attn_pool is not None:
            raise ValueError(
                "dense features read patch tokens through ln_post and the projection; this model pools with an "
                "attention head (SigLIP), whose embedding space its patch tokens do not share"
            )
        return _vit_dense(model.visual, pixels, METHODS.get(method))
    if method not in RESNET_METHODS:
        raise ValueError(f"dense method {method!r} needs a ViT image tower; a ResNet supports {RESNET_METHODS}")
    if not isinstance(model.visual, ModifiedResNet):
        raise TypeError(f"dense features: unknown image tower {type(model.visual).__name__}")
    return _resnet_dense(model.visual, pixels)


def _windows(size: int, window: int, stride: int) -> list[int]:
    if size <= window:
        return [0]
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


@torch.no_grad()
def encode_dense(
    model: CLIP,
    pixels: torch.Tensor,
    method: str = "maskclip",
    *,
    stride: int | None = None,
    upsample: bool = False,
    normalize: bool = False,
) -> torch.Tensor:
    """Dense features [N, H', W', embed_dim] of preprocessed `pixels` [N, 3, H, W] (see the module doc).

    Windows are the model's input size (its positional embeddings are not resized); `stride`
    defaults to two thirds of it, rounded to the output stride. H and W must be multiples of the
    output stride and at least the input size (smaller images: resize first, e.g. `dense_pixels`).
    `upsample=True` returns [N, H, W, embed_dim]."""
    METHODS.get(method)  # an unknown name fails here, naming the choices
    if not isinstance(model, CLIP):
        kind = type(model).__name__
        raise TypeError(f"encode_dense needs the plain CLIP model (clipforge.load(..., backend='none')), got {kind}")
    cell = output_stride(model)
    window = model.config.vision.image_size
    stride = stride or max(cell, (2 * window // 3) // cell * cell)
    n, _, height, width = pixels.shape
    for name, value in (("height", height), ("width", width), ("window", window), ("stride", stride)):
        if value % cell:
            raise ValueError(f"dense features: image {name} {value} is not a multiple of the output stride {cell}")
    if height < window or width < window:
        raise ValueError(f"image {height}x{width} is smaller than the window {window}: resize it to at least {window}")
    pixels = pixels.to(model.device, model.dtype)
    grid_h, grid_w, w = height // cell, width // cell, window // cell
    out = torch.zeros(n, grid_h, grid_w, model.embed_dim, device=pixels.device, dtype=torch.float32)
    count = torch.zeros(1, grid_h, grid_w, 1, device=pixels.device)
    for top in _windows(height, window, stride):
        for left in _windows(width, window, stride):
            crop = pixels[:, :, top : top + window, left : left + window]
            t, lft = top // cell, left // cell
            out[:, t : t + w, lft : lft + w] += _dense_once(model, crop, method).float()
            count[:, t : t + w, lft : lft + w] += 1
    out = out / count
    if normalize:
        out = F.normalize(out, dim=-1)
    if upsample:
        out = upsample_to(out, (height, width))
    return out


def upsample_to(grid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of [N, h, w, C] maps to [N, H, W, C] (align_corners=False)."""
    return F.interpolate(grid.permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
