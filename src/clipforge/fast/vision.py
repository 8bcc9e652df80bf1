"""Fast image towers: the ViT as patch-GEMM + prepared blocks, the ResNet with folded BatchNorm."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..model.vision import Bottleneck, ModifiedResNet, VisionTransformer
from .blocks import FastBlock, LinearSpec, merge_heads, split_heads


def _check_pixels(pixels: torch.Tensor, size: int) -> None:
    if pixels.dim() != 4 or pixels.shape[1] != 3 or pixels.shape[2] != size or pixels.shape[3] != size:
        raise ValueError(f"expected pixels [B, 3, {size}, {size}], got {list(pixels.shape)}")


class FastViT:
    """ViT forward with the patch conv as one GEMM and only the class token kept in the last block."""

    def __init__(self, vit: VisionTransformer, spec: LinearSpec, residual_dtype: torch.dtype) -> None:
        cfg = vit.cfg
        self.dtype = dtype = residual_dtype
        self.compute_dtype = spec.dtype
        self.size, self.patch, self.width = cfg.image_size, cfg.patch_size, cfg.width
        # int8 keeps the patch embedding in fp32: it is cheap, and pixels are not zero-centred per patch.
        patch_spec = spec if spec.kind != "int8" else LinearSpec("aten", torch.float32, spec.rows)
        self.patch_embed = patch_spec(vit.conv1.weight.detach().flatten(1), None)
        pos = vit.positional_embedding.detach()
        self.cls_token = (vit.class_embedding.detach() + pos[0]).to(dtype)
        self.pos = pos[1:].to(dtype)
        self.ln_pre = (vit.ln_pre.weight.detach().to(dtype), vit.ln_pre.bias.detach().to(dtype), vit.ln_pre.eps)
        self.ln_post = (vit.ln_post.weight.detach().to(dtype), vit.ln_post.bias.detach().to(dtype), vit.ln_post.eps)
        self.blocks = [FastBlock(b, spec, residual_dtype) for b in vit.transformer.resblocks]
        self.proj = spec(vit.proj.detach().t(), None)

    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """Patch + class tokens with positions, after ln_pre: [B, 1 + grid², width]."""
        _check_pixels(pixels, self.size)
        b, p, g = pixels.shape[0], self.patch, self.size // self.patch
        patches = (
            pixels.to(self.compute_dtype).view(b, 3, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, 3 * p * p)
        )
        x = torch.empty(b, 1 + g * g, self.width, dtype=self.dtype, device=pixels.device)
        x[:, 0] = self.cls_token
        torch.add(self.patch_embed(patches), self.pos, out=x[:, 1:])
        return F.layer_norm(x, (self.width,), *self.ln_pre)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.tokens(pixels)
        for block in self.blocks[:-1]:
            x = block(x, lambda qkv, h=block.heads: merge_heads(F.scaled_dot_product_attention(*split_heads(qkv, h))))
        last = self.blocks[-1]
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
            [_FoldedBottleneck(b) for b in stage] for stage in (net.layer1, net.layer2, net.layer3, net.layer4)
        ]
        for conv in self._convs():
            conv.to(dtype=dtype, memory_format=torch.channels_last)
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


class _FoldedBottleneck:
    def __init__(self, b: Bottleneck) -> None:
        self.conv1, self.conv2, self.conv3 = _fold(b.conv1, b.bn1), _fold(b.conv2, b.bn2), _fold(b.conv3, b.bn3)
        self.stride = b.avgpool.kernel_size if isinstance(b.avgpool, nn.AvgPool2d) else 1
        self.down: nn.Conv2d | None = None
        self.down_stride = 1
        if b.downsample is not None:
            pool, conv, bn = b.downsample[0], b.downsample[1], b.downsample[2]
            self.down = _fold(conv, bn)
            self.down_stride = pool.kernel_size

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        if self.down is not None:
            identity = self.down(F.avg_pool2d(x, self.down_stride) if self.down_stride > 1 else x)
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        if self.stride > 1:
            out = F.avg_pool2d(out, self.stride)
        return F.relu_(self.conv3(out).add_(identity))


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """conv followed by eval-mode BatchNorm as one conv with bias."""
    return torch.nn.utils.fusion.fuse_conv_bn_eval(conv.eval(), bn.eval())
