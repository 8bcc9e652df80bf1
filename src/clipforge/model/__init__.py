"""Pure nn.Modules (no file I/O): transformer layers, image towers, the text tower and CLIP."""

from .clip import CLIP, CLIPOutput, TextTransformer
from .vision import ModifiedResNet, VisionTransformer

__all__ = ["CLIP", "CLIPOutput", "TextTransformer", "VisionTransformer", "ModifiedResNet"]
