"""Request and response bodies of the HTTP API (pydantic models; the OpenAPI schema comes from these).

Request models see the image as bytes: `payload.py` has already decoded the base64 string of a
JSON body or read the file part of a multipart one. Limit-dependent rules live in `fields.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..index.search import Hit
from .fields import Count, Labels, Target, TemplateSet, Text, Texts
from .limits import Limits


class RequestBody(BaseModel):
    """Shared rules: unknown fields are ignored, `null` means "not given", and so does an empty
    string for the fields in `blank_is_default` (an HTML form sends "" for an untouched field)."""

    model_config = ConfigDict(extra="ignore")
    blank_is_default: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _drop_unset(cls, data: Any) -> Any:
        """Remove the fields that were not really given, so that their defaults apply."""
        if not isinstance(data, dict):
            return data
        return {k: v for k, v in data.items() if v is not None and not (v == "" and k in cls.blank_is_default)}


class SearchRequest(RequestBody):
    """POST /search: a text, an image, or both (their embeddings are averaged)."""

    blank_is_default = frozenset({"k", "target"})
    text: Text | None = Field(None, description="the text query", examples=["a red circle"])
    image: bytes | None = Field(None, description="the query image")
    k: Count = Field(10, description="number of results (at most the server's max_k, see /health)")
    target: Target = Field("image", description="search the image or the caption embeddings")

    @model_validator(mode="after")
    def _has_query(self) -> SearchRequest:
        if self.text is None and self.image is None:
            raise ValueError("give a text query ('text') and/or an image ('image')")
        return self


class ClassifyRequest(RequestBody):
    """POST /classify: zero-shot classification of one image against class names."""

    blank_is_default = frozenset({"templates", "top_k"})
    image: bytes = Field(description="the image to classify")
    labels: Labels = Field(
        description="class names: a list, comma-separated, or (multipart) a repeated field", examples=[["cat", "dog"]]
    )
    templates: TemplateSet | None = Field(None, description="prompt template set (default: the server's)")
    top_k: Count = Field(5, description="number of predictions (at most the number of labels)")


class EmbedRequest(RequestBody):
    """POST /embed: texts and/or one image to embed."""

    texts: Texts = Field(default_factory=list, description="texts to embed (repeat the field in multipart forms)")
    image: bytes | None = Field(None, description="an image to embed")

    @model_validator(mode="after")
    def _has_input(self) -> EmbedRequest:
        if not self.texts and self.image is None:
            raise ValueError("nothing to embed: give 'texts' and/or an 'image'")
        return self


# -- responses ----------------------------------------------------------------------------------

_ERRORS = {
    400: "malformed body, or an image that cannot be read",
    404: "no such item",
    408: "the request body did not arrive in time",
    413: "the body, image, pixel count or aspect ratio is over the server's limit",
    415: "the body is neither JSON nor a form",
    422: "a field is missing or invalid (the message names it)",
}


class ErrorResponse(BaseModel):
    """Every 4xx response: what was wrong, naming the field."""

    detail: str


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses (FastAPI's default 422 schema is not what we send)."""
    return {code: {"model": ErrorResponse, "description": _ERRORS[code]} for code in codes}



class SearchResult(BaseModel):
    """One hit. `name` is a file (or archive member) name, never a server path."""

    id: int
    score: float
    name: str
    caption: str | None
    image_url: str = Field(description="thumbnail of the item: GET it (optionally with ?size=)")

    @classmethod
    def of(cls, hit: Hit) -> SearchResult:
        name = hit.key if hit.member else Path(hit.path).name
        return cls(id=hit.id, score=round(hit.score, 6), name=name, caption=hit.caption, image_url=f"/image/{hit.id}")


class BrowseResponse(BaseModel):
    """A page of the index in its own order (what the web page shows before any query)."""

    items: list[SearchResult] = Field(description="the page's items (score 0: no query was asked)")
    offset: int
    total: int = Field(description="items in the index")


class SearchEcho(BaseModel):
    """The query as the server understood it."""

    text: str | None
    image: bool
    k: int
    target: str


class SearchResponse(BaseModel):
    query: SearchEcho
    results: list[SearchResult]
    took_ms: float
    warnings: list[str] = Field(
        default_factory=list,
        description="problems with the input that did not stop the request, e.g. words the model does not know",
    )


class Prediction(BaseModel):
    label: str
    probability: float


class ClassifyResponse(BaseModel):
    predictions: list[Prediction] = Field(description="the top_k labels, most probable first")
    labels: int = Field(description="number of labels classified against")
    templates: str
    took_ms: float
    warnings: list[str] = Field(
        default_factory=list,
        description="problems with the input that did not stop the request, e.g. words the model does not know",
    )


class EmbedResponse(BaseModel):
    dim: int
    text_embeddings: list[list[float]] = Field(description="one L2-normalised vector per text, in order")
    image_embedding: list[float] | None = Field(description="the L2-normalised image vector, if an image was sent")


class HealthResponse(BaseModel):
    status: Literal["ok"]
    version: str
    items: int
    dim: int
    index: dict[str, Any] = Field(description="the index kind and its parameters")
    targets: list[str] = Field(description="searchable embeddings ('image', and 'caption' if built)")
    model: str | None = Field(description="the model's directory or file name (no server path); null: the default")
    skipped: int = Field(description="inputs skipped at build time")
    limits: Limits
