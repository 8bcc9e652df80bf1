"""GET /image/{id}: a JPEG thumbnail of an indexed item. Only indexed files, looked up by id, are ever read."""

from __future__ import annotations

import io

import anyio
from fastapi import APIRouter, Query
from fastapi.responses import Response

from ...images import ImageDecodeError, load_image
from ..models import error_responses
from ..payload import bad
from ..service import Service, ServiceDep

router = APIRouter()


def thumbnail(data: bytes, size: int, max_pixels: int) -> bytes | None:
    """A JPEG whose longest side is at most `size`, or None if `data` is no (longer a) readable image."""
    try:
        image = load_image(data, max_pixels=max_pixels)
    except ImageDecodeError:
        return None
    image.thumbnail((size, size))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=88)
    return buf.getvalue()


@router.get(
    "/image/{item_id}",
    summary="Thumbnail of an indexed item",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **error_responses(404, 422)},
)
async def image(
    item_id: int,
    svc: ServiceDep,
    size: int | None = Query(None, ge=16, description="longest side in pixels (default and maximum: see /health)"),
) -> Response:
    lim = svc.limits
    size = lim.thumbnail_px if size is None else size
    if size > lim.max_thumbnail_px:
        raise bad(422, f"size: must be between 16 and {lim.max_thumbnail_px}, got {size}")
    jpeg = await anyio.to_thread.run_sync(thumbnail, await _item_bytes(svc, item_id), size, lim.max_image_pixels)
    if jpeg is None:
        raise bad(404, f"the image of item {item_id} is no longer readable")
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=3600"})


async def _item_bytes(svc: Service, item_id: int) -> bytes:
    """The stored file of an indexed item; a 404 for unknown ids and files gone since indexing."""
    try:
        return await anyio.to_thread.run_sync(svc.index.image_bytes, item_id)
    except KeyError:
        raise bad(404, f"no item with id {item_id}") from None
    except (OSError, ValueError):
        raise bad(404, f"the image of item {item_id} is no longer readable") from None
