"""POST /embed: L2-normalised embeddings of texts and/or an image, for clients building their own search."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..models import EmbedRequest, EmbedResponse, error_responses
from ..payload import body_openapi, read_body
from ..service import ServiceDep

router = APIRouter()


@router.post(
    "/embed",
    summary="Embed texts and/or an image",
    description="Returns L2-normalised embeddings (repeat the 'texts' field in multipart forms).",
    responses=error_responses(400, 413, 415, 422),
    response_model=EmbedResponse,
    openapi_extra=body_openapi(EmbedRequest),
)
async def embed(request: Request, svc: ServiceDep) -> EmbedResponse:
    body = await read_body(request, EmbedRequest, svc.limits)
    texts = (await svc.embed_texts(body.texts)).round(7).tolist() if body.texts else []
    image = (await svc.embed_image(body.image)).round(7).tolist() if body.image is not None else None
    return EmbedResponse(dim=svc.index.dim, text_embeddings=texts, image_embedding=image)
