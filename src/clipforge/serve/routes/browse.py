"""GET /items: the index page by page, in index order (the web page's grid before any query)."""

from __future__ import annotations

from fastapi import APIRouter, Query

from ..models import BrowseResponse, SearchResult, error_responses
from ..payload import bad
from ..service import ServiceDep

router = APIRouter()


@router.get("/items", summary="Browse the index", response_model=BrowseResponse, responses=error_responses(422))
async def items(
    svc: ServiceDep,
    offset: int = Query(0, ge=0, description="first item (row) of the page"),
    limit: int = Query(24, ge=1, description="items per page (at most the server's max_k, see /health)"),
) -> BrowseResponse:
    if limit > svc.limits.max_k:
        raise bad(422, f"limit: must be between 1 and {svc.limits.max_k}, got {limit}")
    total = len(svc.index)
    hits = svc.index.browse(min(offset, total), limit)
    return BrowseResponse(items=[SearchResult.of(hit) for hit in hits], offset=offset, total=total)
