"""Typed views of a CLIP model's parts for the methods that reach inside it (prompts, LoRA, MaPLe).

`CLIP.visual` may be any `nn.Module` an adapter wraps; these accessors check the real class once
and return it, so callers read `tower.transformer` with types (a transformer's typed blocks are
`Transformer.blocks`).
"""

from __future__ import annotations

from torch import nn

from ..model.vision import ModifiedResNet, VisionTransformer


def vision_tower(visual: nn.Module) -> VisionTransformer | ModifiedResNet:
    """The image tower as its real class (`isinstance` then tells a ViT from a ResNet)."""
    if not isinstance(visual, (VisionTransformer, ModifiedResNet)):
        raise TypeError(f"unknown image tower {type(visual).__name__}: expected a VisionTransformer or ModifiedResNet")
    return visual


def vit_tower(visual: nn.Module, why: str) -> VisionTransformer:
    """The image tower if it is a Vision Transformer, else ValueError `why`."""
    tower = vision_tower(visual)
    if not isinstance(tower, VisionTransformer):
        raise ValueError(why)
    return tower
