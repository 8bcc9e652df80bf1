"""POST /embed: L2-normalised embeddings of texts and/or an image, for clients building their own search."""

from __future__ import annotations

from fastapi import APIRouter

from ..models import EmbedRequest, EmbedResponse
from ..service import Service
from .body import post_with_body

router = APIRouter()


@post_with_body(
    router,
    "/embed",
    EmbedRequest,
    EmbedResponse,
    summary="Embed texts and/or an image",
    description="Returns L2-normalised embeddings (repeat the 'texts' field in multipart forms).",
)
async def embed(body: EmbedRequest, svc: Service) -> EmbedResponse:
    texts = (await svc.embed_texts(body.texts)).round(7).tolist() if body.texts else []
    image = (await svc.embed_image(body.image)).round(7).tolist() if body.image is not None else None
    return EmbedResponse(dim=svc.index.dim, text_embeddings=texts, image_embedding=image)
