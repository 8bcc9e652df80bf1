"""GET /health: status, what is indexed, and the limits a client must stay within."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from ... import __version__
from ..models import HealthResponse
from ..service import ServiceDep

router = APIRouter()


@router.get("/health", summary="Service status", response_model=HealthResponse)
async def health(svc: ServiceDep) -> HealthResponse:
    info = svc.index.describe()
    info["model"] = Path(info["model"]).name if info.get("model") else None  # a name, never a server path
    return HealthResponse(status="ok", version=__version__, **info, limits=svc.limits)
