"""What every route shares: the index, the limits, the default templates, and model work off the event loop."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

import anyio
import numpy as np
from fastapi import Depends, Request
from PIL import Image

from ..images import ImageDecodeError, load_image
from ..index.search import SearchIndex
from .limits import Limits
from .payload import bad


@dataclass(frozen=True)
class Service:
    """One served index. Embedding and decoding run in worker threads so slow requests don't block others."""

    index: SearchIndex
    limits: Limits
    templates: str  # prompt template set for /classify requests that name none

    def decode(self, data: bytes) -> Image.Image:
        """An uploaded image, refused with a 4xx if unreadable or over the pixel or aspect-ratio limit."""
        lim = self.limits
        try:
            return load_image(data, max_pixels=lim.max_image_pixels, max_aspect_ratio=lim.max_image_aspect_ratio)
        except ImageDecodeError as exc:
            status = 413 if exc.reason.startswith(("too many pixels", "extreme aspect ratio")) else 400
            raise bad(status, f"the upload is not a readable image: {exc.reason}") from None

    async def embed_image(self, data: bytes) -> np.ndarray:
        """The L2-normalised embedding of an uploaded image [dim]."""
        image = await anyio.to_thread.run_sync(self.decode, data)
        return (await anyio.to_thread.run_sync(self.index.embed_images, [image]))[0]

    async def embed_texts(self, texts: list[str]) -> np.ndarray:
        """L2-normalised text embeddings [len(texts), dim]."""
        return await anyio.to_thread.run_sync(self.index.embed_texts, texts)

    def check_target(self, target: str) -> str:
        """`target` if this index has those embeddings (a caption index is optional)."""
        if target not in self.index.targets:
            raise bad(422, f"target: this index has {' and '.join(self.index.targets)} embeddings only")
        return target


def get_service(request: Request) -> Service:
    """The app's `Service` (a FastAPI dependency: routers are module-level, the index is per app)."""
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


def elapsed_ms(start: float) -> float:
    """Milliseconds since `start` (a `time.perf_counter()` reading), for the `took_ms` fields."""
    return round((time.perf_counter() - start) * 1e3, 2)
