"""The HTTP API and web page over a `SearchIndex` (FastAPI).

    GET  /                 web page: text search, query by image, zero-shot classification
    GET  /health           status, item count, index kind, limits
    GET  /search?text=&k=  text search
    POST /search           text and/or image query (JSON with base64 image, or multipart)
    POST /classify         zero-shot classification of an uploaded image against labels
    POST /embed            embeddings of texts and/or an image
    GET  /image/{id}       thumbnail of an indexed item (only indexed files, by id)
    GET  /docs             OpenAPI documentation

Each concern is a router in `routes/`; request and response bodies are the models in `models.py`.
Errors are JSON `{"detail": "..."}` with a 4xx status for anything a client can get wrong. Every
request passes `guard.Guard` (Host validation, cross-site refusal, security headers).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..index.search import SearchIndex
from ..zeroshot import TEMPLATE_SETS
from .guard import LOOPBACK_HOSTS, Guard
from .limits import Limits
from .payload import describe_errors
from .routes import ROUTERS
from .routes.page import STATIC_DIR
from .service import Service


def create_app(
    index: SearchIndex | str | Path,
    limits: Limits | None = None,
    model: str | Path | None = None,
    device: str | None = None,
    templates: str = "openai7",
    preload: bool = True,
    precision: str = "fp32",
    backend: str | None = None,
    allowed_hosts: Sequence[str] = LOOPBACK_HOSTS,
) -> FastAPI:
    """The FastAPI application serving `index` (a `SearchIndex` or an index directory).

    `preload` loads the model now rather than on the first query (which would then be slow);
    `precision`/`backend` choose how queries are embedded (see `clipforge.load`). `allowed_hosts` are
    the names the `Host` header may give (the loopback names by default; "*" allows any).
    """
    if templates not in TEMPLATE_SETS:
        raise ValueError(f"templates {templates!r}: expected one of {', '.join(TEMPLATE_SETS)}")
    idx = index if isinstance(index, SearchIndex) else SearchIndex.open(index, model, device, precision, backend)
    if preload:
        idx.model()
    app = FastAPI(
        title="clipforge search",
        version=__version__,
        description="Search an image index by text or image, classify images zero-shot, embed texts and images.",
    )
    app.state.service = Service(idx, limits or Limits(), templates)
    _add_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(Guard, allowed_hosts=allowed_hosts)  # type: ignore[arg-type]
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Validation failures as a one-line 422 naming the fields; a bug as a bare 500 that leaks nothing."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": describe_errors(exc.errors())}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:  # pragma: no cover - a bug
        return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, status_code=500)
