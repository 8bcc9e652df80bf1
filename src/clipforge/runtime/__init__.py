"""How a model computes: the encoder protocol every model-like object satisfies, and the runtime policy."""

from .policy import (
    BACKENDS,
    ENGINE_BACKENDS,
    ENGINE_PRECISIONS,
    PRECISIONS,
    Backend,
    Precision,
    as_backend,
    as_precision,
    model_dtype,
    resolve_runtime,
)
from .protocol import Encoder, pixel_input

__all__ = [
    "BACKENDS", "ENGINE_BACKENDS", "ENGINE_PRECISIONS", "PRECISIONS", "Backend", "Encoder", "Precision",
    "as_backend", "as_precision", "model_dtype", "pixel_input", "resolve_runtime",
]
