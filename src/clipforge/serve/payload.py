"""Reading request bodies: size-capped, JSON or multipart, validated into a model, every failure a 4xx.

A POST body is either JSON (`{"text": ..., "image": "<base64>", ...}`) or multipart/form-data
(an `image` file part plus text fields; repeated fields for lists). Both are turned into the same
field dict and validated by the endpoint's pydantic model (`models.py`). Nothing here ever opens a
path sent by a client: images arrive as bytes only.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_origin

import anyio
from fastapi import HTTPException, Request
from pydantic import BaseModel, ValidationError

from .limits import Limits

Model = TypeVar("Model", bound=BaseModel)


def bad(status: int, message: str) -> HTTPException:
    return HTTPException(status_code=status, detail=message)


def describe_errors(errors: Iterable[Mapping[str, Any]]) -> str:
    """Pydantic/FastAPI validation errors as one line naming each field, e.g. `texts[1]: must not be empty`."""
    parts = []
    for err in errors:
        where = ""
        for step in err.get("loc", ()):
            if step in ("query", "path", "body"):
                continue
            where += f"[{step}]" if isinstance(step, int) else f"{'.' if where else ''}{step}"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts) or "invalid request"


def validate(model: type[Model], data: Mapping[str, Any], limits: Limits) -> Model:
    """`data` as a `model`, checked against `limits`; a 422 naming the fields otherwise."""
    try:
        return model.model_validate(data, context={"limits": limits})
    except ValidationError as exc:
        raise bad(422, describe_errors(exc.errors())) from None


async def read_body(request: Request, model: type[Model], limits: Limits) -> Model:
    """The JSON or multipart body of `request` as a validated `model`."""
    payload = await read_payload(request, limits)
    return validate(model, payload.values_for(model), limits)


def body_openapi(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI `requestBody` for a route reading `model` by hand (FastAPI cannot declare a body that
    may be JSON or multipart): the model's schema for both, with `image` as base64 or as a file part."""
    content = {}
    for media_type, image in (
        ("application/json", {"type": "string", "contentEncoding": "base64", "description": "base64 of the file"}),
        ("multipart/form-data", {"type": "string", "format": "binary", "description": "a file part"}),
    ):
        schema = model.model_json_schema()
        if "image" in schema["properties"]:
            about = f"{model.model_fields['image'].description}: {image['description']}"
            schema["properties"]["image"] = {**image, "title": "Image", "description": about}
        content[media_type] = {"schema": schema}
    return {"requestBody": {"required": True, "content": content}}


@dataclass
class Payload:
    """Fields of a request body; `image` holds the uploaded image bytes, if any.

    Form fields are lists of strings (a field may repeat); JSON fields are whatever JSON held.
    """

    kind: str  # "json" or "form"
    fields: dict[str, Any] = field(default_factory=dict)
    image: bytes | None = None

    def values_for(self, model: type[BaseModel]) -> dict[str, Any]:
        """The fields as `model` expects them: a repeated form field only where the model takes a list."""
        values = dict(self.fields)
        if self.kind == "form":
            for name, info in model.model_fields.items():
                if name in values and get_origin(info.annotation) is not list:
                    values[name] = self.one(name)
        values["image"] = self.image
        return values

    def one(self, name: str) -> Any:
        value = self.fields.get(name)
        if self.kind == "form" and isinstance(value, list):
            if len(value) > 1:
                raise bad(400, f"field {name!r} was given {len(value)} times; give it once")
            return value[0] if value else None
        return value


async def _read_capped(request: Request, limit: int, timeout: float) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise bad(400, "invalid Content-Length header")
        if int(declared) > limit:
            raise bad(413, f"request body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    try:
        with anyio.fail_after(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise bad(413, f"request body exceeds the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise bad(408, f"the request body did not arrive within {timeout:g} s") from None
    return b"".join(chunks)


def _decode_base64(value: Any, limits: Limits) -> bytes:
    if not isinstance(value, str):
        raise bad(400, "field 'image' must be a base64 string (or upload it as a multipart file)")
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise bad(400, "field 'image' is not valid base64") from None
    if len(data) > limits.max_image_bytes:
        raise bad(413, f"image of {len(data)} bytes exceeds the limit of {limits.max_image_bytes} bytes")
    return data


async def read_payload(request: Request, limits: Limits) -> Payload:
    """Parse a JSON or multipart/urlencoded body within the size limit."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    allowed = ("application/json", "multipart/form-data", "application/x-www-form-urlencoded")
    if ctype not in allowed:
        raise bad(415, f"unsupported content type {ctype or '(none)'!r}; send application/json or multipart/form-data")
    body = await _read_capped(request, limits.max_body_bytes, limits.body_timeout_s)
    if ctype == "application/json":
        data = _parse_json(body)
        image = _decode_base64(data.pop("image"), limits) if data.get("image") is not None else None
        return Payload("json", data, image)
    return await _read_form(request, body, limits)


def _parse_json(body: bytes) -> dict[str, Any]:
    """A JSON object whose strings are all valid Unicode (so they can be tokenised and echoed back)."""
    try:
        data = json.loads(body)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, or an integer of over 4300 digits
        raise bad(400, f"malformed JSON body: {exc}") from None
    except RecursionError:
        raise bad(400, "malformed JSON body: nested too deeply") from None
    if not isinstance(data, dict):
        raise bad(400, "the JSON body must be an object")
    pending: list[Any] = [data]
    while pending:  # iterative, so no nesting that json.loads accepted can overflow it
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise bad(400, "malformed JSON body: a \\u escape is a lone surrogate, not a character") from None
    return data


async def _read_form(request: Request, body: bytes, limits: Limits) -> Payload:
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(
            max_files=2, max_fields=limits.max_texts + limits.max_labels + 16, max_part_size=limits.max_body_bytes
        )
    except HTTPException as exc:
        raise bad(400, f"malformed form data: {exc.detail}") from None
    except Exception as exc:  # the multipart parser raises several types for broken bodies
        raise bad(400, f"malformed form data ({type(exc).__name__}: {exc})") from None
    fields: dict[str, list[str]] = {}
    image: bytes | None = None
    try:
        for name, value in form.multi_items():
            if isinstance(value, str):
                if name == "image":
                    raise bad(400, "field 'image' must be a file upload (or base64 in a JSON body)")
                fields.setdefault(name, []).append(value)
            elif name == "image":
                if image is not None:
                    raise bad(400, "send one image per request")
                image = await value.read()
            else:
                raise bad(400, f"unexpected file field {name!r}; the image goes in the field 'image'")
    finally:
        await form.close()
    if image is not None and len(image) == 0:
        raise bad(400, "the uploaded image is empty (0 bytes)")
    if image is not None and len(image) > limits.max_image_bytes:
        raise bad(413, f"image of {len(image)} bytes exceeds the limit of {limits.max_image_bytes} bytes")
    return Payload("form", fields, image)


