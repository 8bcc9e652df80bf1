"""Head counts of the known OpenAI / OpenCLIP families, recognised by the shapes their weights have.

A bare state dict records widths, depths and patch sizes but not how many attention heads split
each width. Most families use 64-wide heads; ViT-H, ViT-g, ViT-bigG and ViT-e use 16 heads of
80, 88, 104 and 112. The table below is OpenCLIP 3.3.0's `model_configs/*.json` (every config
without timm or Hugging Face towers; `tests/test_families.py` checks it against the installed
files). A tower is recognised by its width, MLP width and (ViT) patch size — not by its depth or
image size, which OpenCLIP's variants of one family change (ViT-H-14-378, -CLIPA-336) while the
head width stays.
"""

from __future__ import annotations

from dataclasses import dataclass

#: (width, MLP width, patch size) -> (heads, families)
VIT_HEADS: dict[tuple[int, int, int], tuple[int, str]] = {
    (384, 1536, 16): (6, "ViT-S-16"),
    (384, 1536, 32): (6, "ViT-S-32"),
    (512, 2048, 16): (8, "ViT-M-16"),
    (512, 2048, 32): (8, "ViT-M-32"),
    (768, 3072, 16): (12, "ViT-B-16"),
    (768, 3072, 32): (12, "ViT-B-32"),
    (896, 3584, 16): (14, "ViT-B-16-plus"),
    (896, 3584, 32): (14, "ViT-B-32-plus"),
    (1024, 4096, 14): (16, "ViT-L-14"),
    (1024, 4096, 16): (16, "ViT-L-16"),
    (1280, 5120, 14): (16, "ViT-H-14"),
    (1280, 5120, 16): (16, "ViT-H-16"),
    (1408, 6144, 14): (16, "ViT-g-14"),
    (1664, 8192, 14): (16, "ViT-bigG-14"),
    (1792, 15360, 14): (16, "ViT-e-14"),
}
#: (width, MLP width) -> heads of the text towers
TEXT_HEADS: dict[tuple[int, int], int] = {
    (256, 1024): 4,
    (384, 1536): 6,
    (512, 2048): 8,
    (640, 2560): 10,
    (768, 3072): 12,
    (1024, 4096): 16,
    (1280, 5120): 20,
}
#: ResNet stem width -> heads of the attention pool (RN50, RN101: 64; RN50x4: 80; RN50x16: 96; RN50x64: 128)
RESNET_HEADS: dict[int, int] = {64: 32, 80: 40, 96: 48, 128: 64}


@dataclass(frozen=True)
class HeadCount:
    """A tower's head count and whether it is known (from the table) or guessed (width // 64)."""

    heads: int
    known: bool
    tower: str


def vit_heads(width: int, mlp_width: int, patch: int) -> HeadCount:
    known = VIT_HEADS.get((width, mlp_width, patch))
    return HeadCount(known[0], True, "vision") if known else HeadCount(max(1, width // 64), False, "vision")


def text_heads(width: int, mlp_width: int) -> HeadCount:
    known = TEXT_HEADS.get((width, mlp_width))
    return HeadCount(known, True, "text") if known else HeadCount(max(1, width // 64), False, "text")


def resnet_heads(width: int) -> HeadCount:
    known = RESNET_HEADS.get(width)
    return HeadCount(known, True, "vision") if known else HeadCount(width * 32 // 64, False, "vision")
