"""Request limits of the HTTP service (all enforced before any model work)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..images import DEFAULT_MAX_ASPECT_RATIO


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 12 * 2**20  # whole request body (multipart overhead included)
    max_image_bytes: int = 10 * 2**20  # one uploaded image
    max_image_pixels: int = 40_000_000  # decoded size; larger images are refused before decoding
    max_image_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO  # long side / short side; slivers refused likewise
    max_k: int = 100  # results per search
    max_texts: int = 32  # texts per /embed request
    max_text_chars: int = 1000  # characters per text, query or label
    max_labels: int = 100  # classes per /classify request
    body_timeout_s: float = 30.0  # a request body must arrive within this time (else 408)
    thumbnail_px: int = 256  # default longest side of /image/{id}
    max_thumbnail_px: int = 1024

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
