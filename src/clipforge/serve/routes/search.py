"""GET /search (text) and POST /search (text and/or image, JSON or multipart)."""

from __future__ import annotations

import time

import anyio
import numpy as np
from fastapi import APIRouter, Query

from ..models import SearchEcho, SearchRequest, SearchResponse, SearchResult, Target, error_responses
from ..payload import validate
from ..service import Service, ServiceDep, elapsed_ms
from .body import post_with_body

router = APIRouter()


async def run_search(svc: Service, query: SearchRequest) -> SearchResponse:
    """Nearest items to the query; a text and an image together search by the mean of their embeddings."""
    start = time.perf_counter()
    target = svc.check_target(query.target)
    parts = []
    notes: list[str] = []
    if query.text is not None:
        notes = await anyio.to_thread.run_sync(svc.index.query_warnings, [query.text])
        parts.append((await svc.embed_texts([query.text]))[0])
    if query.image is not None:
        parts.append(await svc.embed_image(query.image))
    hits = await anyio.to_thread.run_sync(svc.index.search_vector, np.mean(parts, axis=0), query.k, target)
    return SearchResponse(
        query=SearchEcho(text=query.text, image=query.image is not None, k=query.k, target=target),
        results=[SearchResult.of(hit) for hit in hits],
        took_ms=elapsed_ms(start),
        warnings=notes,
    )


@router.get("/search", summary="Text search", response_model=SearchResponse, responses=error_responses(422))
async def search_get(
    svc: ServiceDep,
    text: str = Query(..., description="the text query"),
    k: int = Query(10, ge=1, description="number of results (at most the server's max_k, see /health)"),
    target: Target = Query("image", description="search the image or the caption embeddings"),
) -> SearchResponse:
    query = validate(SearchRequest, {"text": text, "k": k, "target": target}, svc.limits)
    return await run_search(svc, query)


@post_with_body(
    router,
    "/search",
    SearchRequest,
    SearchResponse,
    summary="Search by text and/or image",
    description="A text and an image together are combined (mean of their embeddings).",
)
async def search_post(query: SearchRequest, svc: Service) -> SearchResponse:
    return await run_search(svc, query)
