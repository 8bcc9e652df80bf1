"""clipforge: a toolkit for CLIP-style image-text models."""

from .api import create_model, default_device, get_tokenizer, list_models, load, save
from .config import ModelConfig, PreprocessConfig, TextConfig, VisionConfig, get_config
from .model import CLIP, CLIPOutput

__version__ = "0.1.0"

__all__ = [
    "CLIP", "CLIPOutput", "ModelConfig", "PreprocessConfig", "TextConfig", "VisionConfig",
    "create_model", "default_device", "get_config", "get_tokenizer", "list_models", "load", "save",
]
