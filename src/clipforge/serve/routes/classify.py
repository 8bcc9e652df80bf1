"""POST /classify: zero-shot classification of an uploaded image against client-given labels."""

from __future__ import annotations

import time

import anyio
import torch
from fastapi import APIRouter

from ...zeroshot import TEMPLATE_SETS
from ..models import ClassifyRequest, ClassifyResponse, Prediction
from ..payload import bad
from ..service import Service, elapsed_ms
from .body import post_with_body

router = APIRouter()


@post_with_body(
    router,
    "/classify",
    ClassifyRequest,
    ClassifyResponse,
    summary="Zero-shot classification",
    description=f"Labels: a list or comma-separated names. Templates: one of {', '.join(TEMPLATE_SETS)}.",
)
async def classify(body: ClassifyRequest, svc: Service) -> ClassifyResponse:
    templates = body.templates or svc.templates
    start = time.perf_counter()
    features = await svc.embed_image(body.image)
    try:
        classifier = await anyio.to_thread.run_sync(svc.index.zero_shot, body.labels, templates)
    except ValueError as exc:  # labels the model cannot tell apart (e.g. all unknown words)
        raise bad(422, f"labels: {exc}") from None
    probs = classifier.probabilities(torch.from_numpy(features[None]))[0]
    top = probs.topk(min(body.top_k, len(body.labels)))
    return ClassifyResponse(
        predictions=[
            Prediction(label=body.labels[i], probability=round(float(p), 6)) for p, i in zip(top.values, top.indices)
        ],
        labels=len(body.labels),
        templates=templates,
        took_ms=elapsed_ms(start),
        warnings=list(classifier.warnings),
    )
