"""POST /classify: zero-shot classification of an uploaded image against client-given labels."""

from __future__ import annotations

import time

import anyio
import torch
from fastapi import APIRouter, Request

from ...zeroshot import TEMPLATE_SETS
from ..models import ClassifyRequest, ClassifyResponse, Prediction, error_responses
from ..payload import body_openapi, read_body
from ..service import ServiceDep, elapsed_ms

router = APIRouter()


@router.post(
    "/classify",
    summary="Zero-shot classification",
    description=f"Labels: a list or comma-separated names. Templates: one of {', '.join(TEMPLATE_SETS)}.",
    responses=error_responses(400, 413, 415, 422),
    response_model=ClassifyResponse,
    openapi_extra=body_openapi(ClassifyRequest),
)
async def classify(request: Request, svc: ServiceDep) -> ClassifyResponse:
    body = await read_body(request, ClassifyRequest, svc.limits)
    templates = body.templates or svc.templates
    start = time.perf_counter()
    features = await svc.embed_image(body.image)
    classifier = await anyio.to_thread.run_sync(svc.index.zero_shot, body.labels, templates)
    probs = classifier.probabilities(torch.from_numpy(features[None]))[0]
    top = probs.topk(min(body.top_k, len(body.labels)))
    return ClassifyResponse(
        predictions=[
            Prediction(label=body.labels[i], probability=round(float(p), 6)) for p, i in zip(top.values, top.indices)
        ],
        labels=len(body.labels),
        templates=templates,
        took_ms=elapsed_ms(start),
    )
