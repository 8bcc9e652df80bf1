"""Checkpoint formats: native clipforge directories and converters for OpenAI, OpenCLIP and Hugging Face."""

from .export import EXPORT_FORMATS, export, export_hf, export_openclip, save_native
from .io import CheckpointError, read_tensor_file
from .loader import Checkpoint, build_model, read_checkpoint, resolve_config

__all__ = [
    "EXPORT_FORMATS",
    "Checkpoint",
    "CheckpointError",
    "build_model",
    "export",
    "export_hf",
    "export_openclip",
    "read_checkpoint",
    "read_tensor_file",
    "resolve_config",
    "save_native",
]
