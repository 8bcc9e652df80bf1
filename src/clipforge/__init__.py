"""clipforge: a toolkit for CLIP-style image-text models."""

__version__ = "0.1.0"
