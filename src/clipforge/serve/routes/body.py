"""The one way a POST route reads its body: JSON or multipart, size-capped, validated, documented."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import APIRouter, Request
from pydantic import BaseModel

from ..models import error_responses
from ..payload import body_openapi, read_body
from ..service import Service, ServiceDep

Body = TypeVar("Body", bound=BaseModel)
Handler = Callable[[Body, Service], Awaitable[BaseModel]]


def post_with_body(
    router: APIRouter, path: str, body: type[Body], response: type[BaseModel], summary: str, description: str
) -> Callable[[Handler[Body]], Handler[Body]]:
    """Register `handler(body, service)` as `POST path`: the request body (JSON with a base64 image, or
    multipart with a file part) is read within the limits and validated as `body` before the handler
    runs; every failure is a 4xx (see `payload.py`), and the OpenAPI schema documents both media types."""

    def register(handler: Handler[Body]) -> Handler[Body]:
        @router.post(
            path,
            name=handler.__name__,
            summary=summary,
            description=description,
            responses=error_responses(400, 408, 413, 415, 422),
            response_model=response,
            openapi_extra=body_openapi(body),
        )
        async def endpoint(request: Request, svc: ServiceDep) -> BaseModel:
            return await handler(await read_body(request, body, svc.limits), svc)

        return handler

    return register
