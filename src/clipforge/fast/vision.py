"""Fast image towers: the ViT as patch-GEMM + prepared blocks, the ResNet with folded BatchNorm."""

from __future__ import annotations

import copy
import functools
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..model.vision import Bottleneck, ModifiedResNet, StemBlock, StemStage, VisionTransformer
from .blocks import FastBlock, LinearSpec, merge_heads, split_heads


def _attend(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """Full self-attention over [B, L, 3D] fused q|k|v → [B, L, D]."""
    return merge_heads(F.scaled_dot_product_attention(*split_heads(qkv, heads)))


def _check_pixels(pixels: torch.Tensor, size: int) -> None:
    if pixels.dim() != 4 or pixels.shape[1] != 3 or pixels.shape[2] != size or pixels.shape[3] != size:
        raise ValueError(f"expected pixels [B, 3, {size}, {size}], got {list(pixels.shape)}")


class FastViT:
    """ViT forward with the patch conv as one GEMM and, for class-token pooling, only the class
    token kept in the last block. A conv stem runs as BatchNorm-folded convolutions first."""

    def __init__(self, vit: VisionTransformer, spec: LinearSpec, residual_dtype: torch.dtype) -> None:
        cfg = vit.cfg
        if vit.class_embedding is None or vit.proj is None:
            raise ValueError("the ViT engine needs a class token and a projection (SigLIP's layout runs plain)")
        self.dtype = dtype = residual_dtype
        self.compute_dtype = spec.dtype
        self.size, self.width, self.pool = cfg.image_size, cfg.width, cfg.pool
        self.grid = cfg.grid_size
        self.patch = vit.conv1.kernel_size[0]  # pixels of the stem output (or of the image) per patch side
        self.in_channels = vit.conv1.in_channels
        # The stem runs in the compute dtype (fp32 for int8, whose linears take fp32 inputs).
        stem = [cast(StemStage, st) for st in copy.deepcopy(vit.stem).float().eval()] if vit.stem is not None else []
        self.stem = [
            (
                _fold(st.conv, st.bn).to(spec.dtype),
                [_FoldedStemBlock(cast(StemBlock, b), spec.dtype) for b in st.blocks],
            )
            for st in stem
        ]
        # int8 keeps the patch embedding in fp32: it is cheap, and pixels are not zero-centred per patch.
        patch_spec = spec if spec.kind != "int8" else LinearSpec("aten", torch.float32, spec.rows)
        self.patch_embed = patch_spec(vit.conv1.weight.detach().flatten(1), None)
        pos = vit.positional_embedding.detach()
        self.cls_token = (vit.class_embedding.detach() + pos[0]).to(dtype)
        self.pos = pos[1:].to(dtype)
        ln = vit.ln_pre  # an Identity for OpenCLIP's no_ln_pre
        self.ln_pre: tuple[torch.Tensor, torch.Tensor, float] | None = None
        if isinstance(ln, nn.LayerNorm):
            self.ln_pre = (ln.weight.detach().to(dtype), ln.bias.detach().to(dtype), ln.eps)
        self.ln_post = (vit.ln_post.weight.detach().to(dtype), vit.ln_post.bias.detach().to(dtype), vit.ln_post.eps)
        self.blocks = [FastBlock(b, spec, residual_dtype) for b in vit.transformer.blocks]
        self.proj = spec(vit.proj.detach().t(), None)

    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """Patch + class tokens with positions, after ln_pre: [B, 1 + grid², width]."""
        _check_pixels(pixels, self.size)
        b, p, g, c = pixels.shape[0], self.patch, self.grid, self.in_channels
        x = pixels.to(self.compute_dtype)
        for conv, blocks in self.stem:
            x = F.relu_(conv(x))
            for block in blocks:
                x = block(x)
        patches = x.reshape(b, c, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, c * p * p)
        out = torch.empty(b, 1 + g * g, self.width, dtype=self.dtype, device=pixels.device)
        out[:, 0] = self.cls_token
        torch.add(self.patch_embed(patches), self.pos, out=out[:, 1:])
        return out if self.ln_pre is None else F.layer_norm(out, (self.width,), *self.ln_pre)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.tokens(pixels)
        for block in self.blocks[:-1]:
            x = block(x, functools.partial(_attend, heads=block.heads))
        last = self.blocks[-1]
        if self.pool != "cls":  # every patch token is pooled: the last block runs in full
            x = last(x, lambda qkv: _attend(qkv, last.heads))
            if self.pool == "mean_then_ln":
                pooled = F.layer_norm(x[:, 1:].mean(dim=1), (self.width,), *self.ln_post)
            else:
                pooled = F.layer_norm(x[:, 1:], (self.width,), *self.ln_post).mean(dim=1)
            return self.proj(pooled.to(self.compute_dtype)).float()
        q, k, v = split_heads(last.attention_input(x), last.heads)
        cls = merge_heads(F.scaled_dot_product_attention(q[:, :, :1], k, v))[:, 0]
        cls = last.mlp(last.attend(x[:, 0].contiguous(), cls))
        return self.proj(F.layer_norm(cls, (self.width,), *self.ln_post).to(self.compute_dtype)).float()


class FastResNet:
    """ModifiedResNet with BatchNorm folded into the convolutions, channels-last, fused k|v pooling."""

    def __init__(self, resnet: ModifiedResNet, spec: LinearSpec) -> None:
        self.dtype = dtype = spec.dtype
        self.size = resnet.cfg.image_size
        net = copy.deepcopy(resnet).float().eval()
        self.stem = [
            _fold(net.conv1, net.bn1),
            _fold(net.conv2, net.bn2),
            _fold(net.conv3, net.bn3),
        ]
        self.stages = [
            [_FoldedBottleneck(cast(Bottleneck, b)) for b in stage]
            for stage in (net.layer1, net.layer2, net.layer3, net.layer4)
        ]
        for conv in self._convs():
            conv.to(dtype=dtype, memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stub lacks it
        pool = net.attnpool
        self.heads = pool.heads
        self.pos = pool.positional_embedding.detach().to(dtype)
        self.q = spec(pool.q_proj.weight, pool.q_proj.bias)
        self.kv = spec(
            torch.cat([pool.k_proj.weight, pool.v_proj.weight]), torch.cat([pool.k_proj.bias, pool.v_proj.bias])
        )
        self.c_proj = spec(pool.c_proj.weight, pool.c_proj.bias)

    def _convs(self) -> list[nn.Conv2d]:
        convs = list(self.stem)
        for stage in self.stages:
            for b in stage:
                convs += [b.conv1, b.conv2, b.conv3] + ([b.down] if b.down is not None else [])
        return convs

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        _check_pixels(pixels, self.size)
        x = pixels.to(self.dtype).contiguous(memory_format=torch.channels_last)
        for conv in self.stem:
            x = F.relu_(conv(x))
        x = F.avg_pool2d(x, 2)
        for stage in self.stages:
            for block in stage:
                x = block(x)
        return self.pool(x).float()

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        x = fmap.flatten(2).transpose(1, 2)  # [B, HW, C]: contiguous for channels-last maps
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1) + self.pos
        b, n, c = x.shape
        h = self.heads
        q = self.q(x[:, 0].contiguous()).view(b, 1, h, c // h).transpose(1, 2)
        kv = self.kv(x).view(b, n, 2, h, c // h).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1])
        return self.c_proj(out.reshape(b, c))


class _FoldedStemBlock:
    def __init__(self, b: StemBlock, dtype: torch.dtype) -> None:
        self.conv1, self.conv2 = _fold(b.conv1, b.bn1).to(dtype), _fold(b.conv2, b.bn2).to(dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu_(self.conv2(F.relu(self.conv1(x))).add_(x))


class _FoldedBottleneck:
    def __init__(self, b: Bottleneck) -> None:
        self.conv1, self.conv2, self.conv3 = _fold(b.conv1, b.bn1), _fold(b.conv2, b.bn2), _fold(b.conv3, b.bn3)
        self.stride = _side(b.avgpool.kernel_size) if isinstance(b.avgpool, nn.AvgPool2d) else 1
        self.down: nn.Conv2d | None = None
        self.down_stride = 1
        if isinstance(b.downsample, nn.Sequential):
            pool, conv, bn = b.downsample
            assert isinstance(pool, nn.AvgPool2d) and isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
            self.down = _fold(conv, bn)
            self.down_stride = _side(pool.kernel_size)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        if self.down is not None:
            identity = self.down(F.avg_pool2d(x, self.down_stride) if self.down_stride > 1 else x)
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        if self.stride > 1:
            out = F.avg_pool2d(out, self.stride)
        return F.relu_(self.conv3(out).add_(identity))


def _side(kernel: int | tuple[int, ...]) -> int:
    """A square pooling kernel's side."""
    return kernel if isinstance(kernel, int) else kernel[0]


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """conv followed by eval-mode BatchNorm as one conv with bias."""
    return torch.nn.utils.fusion.fuse_conv_bn_eval(conv.eval(), bn.eval())
