"""Image towers: the Vision Transformer and OpenAI's ModifiedResNet with attention pooling."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..config import VisionConfig
from .layers import MLP, Attention, LayerNorm, Transformer


class StemBlock(nn.Module):
    """Residual 3×3 block at one stem resolution: relu(x + bn2(conv2(relu(bn1(conv1(x))))))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.bn2.weight)  # each block starts as the identity, as the ResNet's bottlenecks do

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class StemStage(nn.Module):
    """One stage of the ViT's conv stem: a 3×3 stride-2 conv + BatchNorm + ReLU, then `depth - 1`
    residual blocks at the new resolution."""

    def __init__(self, in_channels: int, out_channels: int, depth: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.blocks = nn.Sequential(*(StemBlock(out_channels) for _ in range(depth - 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(F.relu(self.bn(self.conv(x))))


class AttentionPoolHead(nn.Module):
    """Multihead attention pooling (SigLIP's head): a learnt probe attends over the tokens, then
    `z + MLP(LN(z))`. The attention has `nn.MultiheadAttention`'s fused in-projection layout."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, act: str, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.probe = nn.Parameter(torch.randn(1, 1, width) * width**-0.5)
        self.attn = Attention(width, heads)
        self.ln = LayerNorm(width, eps=eps)
        self.mlp = MLP(width, int(round(width * mlp_ratio)), act)
        nn.init.normal_(self.attn.in_proj_weight, std=width**-0.5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, L, width] → [B, width]."""
        b, n, d = tokens.shape
        w, bias = self.attn.in_proj_weight, self.attn.in_proj_bias
        q = F.linear(self.probe.to(tokens.dtype), w[:d], bias[:d]).expand(b, 1, d)
        k, v = F.linear(tokens, w[d:], bias[d:]).view(b, n, 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q = q.view(b, 1, self.heads, d // self.heads).transpose(1, 2)
        z = self.attn.out_proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, 1, d))[:, 0]
        return z + self.mlp(self.ln(z))


class VisionTransformer(nn.Module):
    """ViT: (optional conv stem,) patchify, prepend a class token, pre-LN transformer, pool, project.

    Pooling (`cfg.pool`): LN on the class token, the mean of LN'd patch tokens, LN on the mean of the
    patch tokens, or attention pooling over every LN'd token (SigLIP's head). `cfg.ln_pre=False` drops
    the LN before the transformer. Without a stem the parameters are exactly the OpenAI/OpenCLIP
    layout; a stem adds `stem.{i}.conv/bn` (and `stem.{i}.blocks.{j}.*` when `stem_depth > 1`) and
    widens `conv1`'s input to the stem's last width. Without a class token (`cfg.class_token=False`)
    the tokens are the patches alone; `prefix` (0 or 1) is where the patch tokens start.
    """

    def __init__(self, cfg: VisionConfig, embed_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        width = cfg.width
        self.stem: nn.Sequential | None = None
        channels = 3
        if cfg.stem_widths:
            chans = (3, *cfg.stem_widths)
            self.stem = nn.Sequential(*(StemStage(a, b, cfg.stem_depth) for a, b in zip(chans[:-1], chans[1:])))
            channels = cfg.stem_widths[-1]
        kernel = cfg.patch_size // 2 ** len(cfg.stem_widths)
        self.conv1 = nn.Conv2d(channels, width, kernel_size=kernel, stride=kernel, bias=cfg.patch_bias)
        scale = width**-0.5
        self.prefix = 1 if cfg.class_token else 0
        self.class_embedding = nn.Parameter(scale * torch.randn(width)) if cfg.class_token else None
        self.positional_embedding = nn.Parameter(scale * torch.randn(cfg.grid_size**2 + self.prefix, width))
        self.ln_pre = LayerNorm(width, eps=cfg.layer_norm_eps) if cfg.ln_pre else nn.Identity()
        self.transformer = Transformer(width, cfg.depth, cfg.heads, cfg.mlp_ratio, cfg.act, cfg.layer_norm_eps)
        self.ln_post = LayerNorm(width, eps=cfg.layer_norm_eps)
        self.attn_pool = AttentionPoolHead(width, cfg.heads, cfg.mlp_ratio, cfg.act, cfg.layer_norm_eps) if (
            cfg.pool == "map"
        ) else None
        self.proj = nn.Parameter(scale * torch.randn(width, embed_dim)) if cfg.proj else None
        self.transformer.init_weights()

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """(Class +) patch tokens with positions [B, prefix + grid², width], before `ln_pre`."""
        x = pixels.to(self.conv1.weight.dtype)
        if self.stem is not None:
            x = self.stem(x)  # [B, stem_widths[-1], H / 2^n, W / 2^n]
        x = self.conv1(x).flatten(2).transpose(1, 2)  # [B, grid², width]
        if self.class_embedding is not None:
            x = torch.cat([self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1), x], dim=1)
        return x + self.positional_embedding.to(x.dtype)

    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """Embedded tokens [B, prefix + grid², width] before the transformer."""
        return self.ln_pre(self.embed(pixels))

    def forward_hidden(self, pixels: torch.Tensor) -> torch.Tensor:
        """All output tokens [B, prefix + grid², width] after the transformer (no final LN)."""
        return self.transformer(self.tokens(pixels))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Width → embedding space (`proj`, or as it is for towers without one)."""
        return x if self.proj is None else x @ self.proj

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """The image embedding [B, embed_dim] from the transformer's output tokens [B, prefix + grid², width]."""
        patches = hidden[:, self.prefix :]
        if self.cfg.pool == "mean":
            return self.project(self.ln_post(patches).mean(dim=1))
        if self.cfg.pool == "mean_then_ln":
            return self.project(self.ln_post(patches.mean(dim=1)))
        if self.attn_pool is not None:
            return self.project(self.attn_pool(self.ln_post(hidden)))
        return self.project(self.ln_post(hidden[:, 0]))

    def patch_features(self, hidden: torch.Tensor) -> torch.Tensor:
        """Per-patch embeddings [B, grid², embed_dim]: each patch token through `ln_post` and `proj`."""
        return self.project(self.ln_post(hidden[:, self.prefix :]))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.pool(self.forward_hidden(pixels))


class Bottleneck(nn.Module):
    """ResNet bottleneck with anti-aliased striding: convs are stride 1, an avgpool does the stride."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu3 = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride > 1 or inplanes != planes * self.expansion:
            self.downsample = nn.Sequential(
                OrderedDict(
                    [
                        ("-1", nn.AvgPool2d(stride)),
                        ("0", nn.Conv2d(inplanes, planes * self.expansion, 1, stride=1, bias=False)),
                        ("1", nn.BatchNorm2d(planes * self.expansion)),
                    ]
                )
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        return self.relu3(out + identity)


class AttentionPool2d(nn.Module):
    """Pools a feature map with one attention query: the spatial mean, attending over mean + positions."""

    def __init__(self, spatial: int, width: int, heads: int, out_dim: int) -> None:
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(spatial**2 + 1, width) / width**0.5)
        self.k_proj = nn.Linear(width, width)
        self.q_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.c_proj = nn.Linear(width, out_dim)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).transpose(1, 2)  # [B, HW, C]
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1) + self.positional_embedding.to(x.dtype)
        b, n, c = x.shape
        h = self.heads
        q = self.q_proj(x[:, :1]).view(b, 1, h, c // h).transpose(1, 2)
        k = self.k_proj(x).view(b, n, h, c // h).transpose(1, 2)
        v = self.v_proj(x).view(b, n, h, c // h).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.c_proj(out.transpose(1, 2).reshape(b, c))


class ModifiedResNet(nn.Module):
    """OpenAI's CLIP ResNet: 3-conv stem with avgpool, anti-aliased bottlenecks, attention pooling."""

    def __init__(self, cfg: VisionConfig, embed_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        width = cfg.width
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu3 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(2)
        self._inplanes = width
        self.layer1 = self._make_layer(width, cfg.stages[0])
        self.layer2 = self._make_layer(width * 2, cfg.stages[1], stride=2)
        self.layer3 = self._make_layer(width * 4, cfg.stages[2], stride=2)
        self.layer4 = self._make_layer(width * 8, cfg.stages[3], stride=2)
        self.attnpool = AttentionPool2d(cfg.image_size // 32, width * 32, cfg.heads, embed_dim)
        self._init_weights()

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        std = self.attnpool.c_proj.in_features**-0.5
        for lin in (self.attnpool.q_proj, self.attnpool.k_proj, self.attnpool.v_proj, self.attnpool.c_proj):
            nn.init.normal_(lin.weight, std=std)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for name, param in stage.named_parameters():
                if name.endswith("bn3.weight"):
                    nn.init.zeros_(param)

    def stages(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """The four stages' feature maps (strides 4, 8, 16, 32), e.g. for PatchCore's mid-level features."""
        x = pixels.to(self.conv1.weight.dtype)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        x = self.avgpool(x)
        maps = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            maps.append(x)
        return maps

    def feature_map(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.stages(pixels)[-1]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.attnpool(self.feature_map(pixels))


def build_vision_tower(cfg: VisionConfig, embed_dim: int) -> VisionTransformer | ModifiedResNet:
    return VisionTransformer(cfg, embed_dim) if cfg.kind == "vit" else ModifiedResNet(cfg, embed_dim)
