"""Fast inference paths: `optimize(model, precision, backend)` → an engine with `encode_image`/`encode_text`.

The engine is a separate layer over a loaded `CLIP`: it copies the weights into kernel-friendly
forms (oneDNN-packed fp32/bf16 linears with fused activations and residual adds, int8 dynamic
quantisation, or an ONNX Runtime session) and never changes the model.
"""

from .engine import BACKENDS, PRECISIONS, FastCLIP, default_options, engine_refusal, optimize

__all__ = ["BACKENDS", "PRECISIONS", "FastCLIP", "default_options", "engine_refusal", "optimize"]
