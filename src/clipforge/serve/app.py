"""The HTTP API and web page over a `SearchIndex` (FastAPI).

    GET  /                 web page: text search, query by image, zero-shot classification
    GET  /health           status, item count, index kind, limits
    GET  /search?text=&k=  text search
    POST /search           text and/or image query (JSON with base64 image, or multipart)
    POST /classify         zero-shot classification of an uploaded image against labels
    POST /embed            embeddings of texts and/or an image
    GET  /image/{id}       thumbnail of an indexed item (only indexed files, by id)
    GET  /docs             OpenAPI documentation

Errors are JSON `{"detail": "..."}` with a 4xx status for anything a client can get wrong.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..images import ImageDecodeError, load_image
from ..index.search import SearchIndex
from ..zeroshot import TEMPLATE_SETS
from .limits import Limits
from .payload import Payload, bad, parse_k, parse_labels, parse_text, parse_texts, read_payload

STATIC_DIR = Path(__file__).parent / "static"


def _body_doc(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """OpenAPI request body: the same fields as JSON (image as base64) or multipart (image as a file)."""
    json_props = {k: ({"type": "string", "format": "byte"} if k == "image" else v) for k, v in properties.items()}
    form_props = {k: ({"type": "string", "format": "binary"} if k == "image" else v) for k, v in properties.items()}
    schema = {"type": "object", "properties": json_props, **({"required": required} if required else {})}
    form = {"type": "object", "properties": form_props, **({"required": required} if required else {})}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}, "multipart/form-data": {"schema": form}},
        }
    }


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("query", "path", "body"))
        parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"


def create_app(
    index: SearchIndex | str | Path,
    limits: Limits | None = None,
    model: str | Path | None = None,
    device: str = "cpu",
    templates: str = "openai7",
    preload: bool = True,
    precision: str = "fp32",
    backend: str | None = None,
) -> FastAPI:
    """The FastAPI application serving `index` (a `SearchIndex` or an index directory).

    `preload` loads the model now rather than on the first query (which would then be slow);
    `precision`/`backend` choose how queries are embedded (see `clipforge.load`).
    """
    idx = index if isinstance(index, SearchIndex) else SearchIndex.open(index, model, device, precision, backend)
    lim = limits or Limits()
    if templates not in TEMPLATE_SETS:
        raise ValueError(f"templates {templates!r}: expected one of {', '.join(TEMPLATE_SETS)}")
    if preload:
        idx.model()
    app = FastAPI(
        title="clipforge search",
        version=__version__,
        description="Search an image index by text or image, classify images zero-shot, embed texts and images.",
    )
    app.state.index, app.state.limits = idx, lim

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:  # pragma: no cover - a bug
        return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, status_code=500)

    def decode(data: bytes):
        try:
            return load_image(data, max_pixels=lim.max_image_pixels)
        except ImageDecodeError as exc:
            status = 413 if exc.reason.startswith("too many pixels") else 400
            raise bad(status, f"the upload is not a readable image: {exc.reason}") from None

    async def embed_image(data: bytes) -> np.ndarray:
        image = await anyio.to_thread.run_sync(decode, data)
        return (await anyio.to_thread.run_sync(idx.embed_images, [image]))[0]

    async def embed_text(text: str) -> np.ndarray:
        return (await anyio.to_thread.run_sync(idx.embed_texts, [text]))[0]

    def results(hits) -> list[dict[str, Any]]:
        return [
            {
                "id": h.id,
                "score": round(h.score, 6),
                "name": h.key if h.member else Path(h.path).name,
                "caption": h.caption,
                "image_url": f"/image/{h.id}",
            }
            for h in hits
        ]

    def target_of(value: Any) -> str:
        target = "image" if value in (None, "") else value
        if target not in idx.targets:
            raise bad(422, f"target must be one of {', '.join(idx.targets)}")
        return target

    async def run_search(text: str | None, image: bytes | None, k: int, target: str) -> dict[str, Any]:
        start = time.perf_counter()
        parts = []
        if text is not None:
            parts.append(await embed_text(text))
        if image is not None:
            parts.append(await embed_image(image))
        if not parts:
            raise bad(422, "give a text query ('text') and/or an image ('image')")
        hits = await anyio.to_thread.run_sync(lambda: idx.search_vector(np.mean(parts, axis=0), k, target))
        query = {"text": text, "image": image is not None, "k": k, "target": target}
        return {"query": query, "results": results(hits), "took_ms": round((time.perf_counter() - start) * 1e3, 2)}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/health", summary="Service status")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, **idx.describe(), "limits": lim.to_dict()}

    @app.get("/search", summary="Text search")
    async def search_get(
        text: str = Query(..., description="the text query"),
        k: int = Query(10, ge=1, le=lim.max_k, description="number of results"),
        target: str = Query("image", description="'image' or 'caption' embeddings"),
    ) -> dict[str, Any]:
        return await run_search(parse_text(text, lim), None, k, target_of(target))

    @app.post(
        "/search",
        summary="Search by text and/or image",
        description="A text and an image together are combined (mean of their embeddings).",
        openapi_extra=_body_doc(
            {
                "text": {"type": "string"},
                "image": {},
                "k": {"type": "integer", "default": 10},
                "target": {"type": "string", "enum": ["image", "caption"]},
            }
        ),
    )
    async def search_post(request: Request) -> dict[str, Any]:
        p = await read_payload(request, lim)
        text, k = parse_text(p.one("text"), lim), parse_k(p.one("k"), lim)
        return await run_search(text, p.image, k, target_of(p.one("target")))

    @app.post(
        "/classify",
        summary="Zero-shot classification",
        description=f"Labels: a list or comma-separated names. Templates: one of {', '.join(TEMPLATE_SETS)}.",
        openapi_extra=_body_doc(
            {
                "image": {},
                "labels": {"type": "string", "example": "cat,dog,car"},
                "templates": {"type": "string", "default": templates},
                "top_k": {"type": "integer", "default": 5},
            },
            ["image", "labels"],
        ),
    )
    async def classify(request: Request) -> dict[str, Any]:
        p = await read_payload(request, lim)
        labels = parse_labels(p.many("labels"), lim)
        chosen = p.one("templates") or templates
        if not isinstance(chosen, str) or chosen not in TEMPLATE_SETS:
            raise bad(422, f"templates must be one of {', '.join(TEMPLATE_SETS)}")
        top_k = min(parse_k(p.one("top_k"), lim, default=5, name="top_k"), len(labels))
        if p.image is None:
            raise bad(422, "the image is missing: upload it in the field 'image'")
        start = time.perf_counter()
        features = await embed_image(p.image)
        clf = await anyio.to_thread.run_sync(idx.zero_shot, labels, chosen)
        import torch

        probs = clf.probabilities(torch.from_numpy(features[None]))[0]
        top = probs.topk(top_k)
        preds = [{"label": labels[i], "probability": round(float(v), 6)} for v, i in zip(top.values, top.indices)]
        return {
            "predictions": preds,
            "labels": len(labels),
            "templates": chosen,
            "took_ms": round((time.perf_counter() - start) * 1e3, 2),
        }

    @app.post(
        "/embed",
        summary="Embed texts and/or an image",
        description="Returns L2-normalised embeddings (repeat the 'texts' field in multipart forms).",
        openapi_extra=_body_doc({"texts": {"type": "array", "items": {"type": "string"}}, "image": {}}),
    )
    async def embed(request: Request) -> dict[str, Any]:
        p: Payload = await read_payload(request, lim)
        raw = p.fields.get("texts")
        if p.kind == "json" and raw is not None and not isinstance(raw, list):
            raise bad(422, "texts must be a list of strings")
        texts = parse_texts(p.many("texts"), lim)
        if not texts and p.image is None:
            raise bad(422, "nothing to embed: give 'texts' and/or an 'image'")
        out: dict[str, Any] = {"dim": idx.dim, "text_embeddings": [], "image_embedding": None}
        if texts:
            vecs = await anyio.to_thread.run_sync(idx.embed_texts, texts)
            out["text_embeddings"] = vecs.round(7).tolist()
        if p.image is not None:
            out["image_embedding"] = (await embed_image(p.image)).round(7).tolist()
        return out

    @app.get(
        "/image/{item_id}",
        summary="Thumbnail of an indexed item",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "no such item"}},
    )
    async def image(item_id: int, size: int = Query(lim.thumbnail_px, ge=16, le=lim.max_thumbnail_px)) -> Response:
        try:
            data = await anyio.to_thread.run_sync(idx.image_bytes, item_id)
        except KeyError:
            raise HTTPException(404, f"no item with id {item_id}") from None
        except (OSError, ValueError):
            raise HTTPException(404, f"the image of item {item_id} is no longer readable") from None
        jpeg = await anyio.to_thread.run_sync(_thumbnail, data, size, lim.max_image_pixels)
        if jpeg is None:
            raise HTTPException(404, f"the image of item {item_id} is no longer readable")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=3600"})

    return app


def _thumbnail(data: bytes, size: int, max_pixels: int) -> bytes | None:
    try:
        image = load_image(data, max_pixels=max_pixels)
    except ImageDecodeError:
        return None
    image.thumbnail((size, size))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=88)
    return buf.getvalue()
