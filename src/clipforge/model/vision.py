"""Image towers: the Vision Transformer and OpenAI's ModifiedResNet with attention pooling."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..config import VisionConfig
from .layers import LayerNorm, Transformer


class VisionTransformer(nn.Module):
    """ViT: patchify, prepend a class token, pre-LN transformer, LN on the class token, project."""

    def __init__(self, cfg: VisionConfig, embed_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        width = cfg.width
        self.conv1 = nn.Conv2d(3, width, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False)
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(cfg.grid_size**2 + 1, width))
        self.ln_pre = LayerNorm(width, eps=cfg.layer_norm_eps)
        self.transformer = Transformer(width, cfg.layers, cfg.heads, cfg.mlp_ratio, cfg.act, cfg.layer_norm_eps)
        self.ln_post = LayerNorm(width, eps=cfg.layer_norm_eps)
        self.proj = nn.Parameter(scale * torch.randn(width, embed_dim))
        self.transformer.init_weights()

    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """Embedded tokens [B, 1 + grid², width] before the transformer."""
        x = self.conv1(pixels.to(self.conv1.weight.dtype)).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        return self.ln_pre(x)

    def forward_hidden(self, pixels: torch.Tensor) -> torch.Tensor:
        """All output tokens [B, 1 + grid², width] after the transformer (no final LN)."""
        return self.transformer(self.tokens(pixels))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.forward_hidden(pixels)
        return self.ln_post(x[:, 0]) @ self.proj


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
        self.layer1 = self._make_layer(width, cfg.layers[0])
        self.layer2 = self._make_layer(width * 2, cfg.layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, cfg.layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, cfg.layers[3], stride=2)
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

    def feature_map(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.to(self.conv1.weight.dtype)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        x = self.avgpool(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.attnpool(self.feature_map(pixels))


def build_vision_tower(cfg: VisionConfig, embed_dim: int) -> nn.Module:
    return VisionTransformer(cfg, embed_dim) if cfg.kind == "vit" else ModifiedResNet(cfg, embed_dim)
