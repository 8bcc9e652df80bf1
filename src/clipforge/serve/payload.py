"""Reading and validating request bodies: size-capped, JSON or multipart, every failure a 4xx.

A POST body is either JSON (`{"text": ..., "image": "<base64>", ...}`) or multipart/form-data
(an `image` file part plus text fields; repeated fields for lists). Nothing here ever opens a
path sent by a client: images arrive as bytes only.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException, Request

from .limits import Limits


def bad(status: int, message: str) -> HTTPException:
    return HTTPException(status_code=status, detail=message)


@dataclass
class Payload:
    """Fields of a request body; `image` holds the uploaded image bytes, if any."""

    kind: str  # "json" or "form"
    fields: dict[str, Any] = field(default_factory=dict)
    image: bytes | None = None

    def one(self, name: str) -> Any:
        value = self.fields.get(name)
        if self.kind == "form" and isinstance(value, list):
            if len(value) > 1:
                raise bad(400, f"field {name!r} was given {len(value)} times; give it once")
            return value[0] if value else None
        return value

    def many(self, name: str) -> list[Any] | None:
        value = self.fields.get(name)
        if value is None:
            return None
        return value if isinstance(value, list) else [value]


async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise bad(400, "invalid Content-Length header")
        if int(declared) > limit:
            raise bad(413, f"request body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise bad(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
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
    body = await _read_capped(request, limits.max_body_bytes)
    if ctype == "application/json":
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise bad(400, f"malformed JSON body: {exc}") from None
        if not isinstance(data, dict):
            raise bad(400, "the JSON body must be an object")
        image = _decode_base64(data.pop("image"), limits) if data.get("image") is not None else None
        return Payload("json", data, image)
    return await _read_form(request, body, limits)


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


# -- field validators ----------------------------------------------------------------------


def parse_k(value: Any, limits: Limits, default: int = 10, name: str = "k") -> int:
    if value is None or value == "":
        return min(default, limits.max_k)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise bad(422, f"{name} must be an integer between 1 and {limits.max_k}")
    try:
        k = int(value)
    except ValueError:
        raise bad(422, f"{name} must be an integer between 1 and {limits.max_k}, got {value!r}") from None
    if not 1 <= k <= limits.max_k:
        raise bad(422, f"{name} must be between 1 and {limits.max_k}, got {k}")
    return k


def parse_text(value: Any, limits: Limits, name: str = "text") -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad(422, f"{name} must be a string")
    text = value.strip()
    if not text:
        raise bad(422, f"{name} is empty")
    if len(text) > limits.max_text_chars:
        raise bad(422, f"{name} is {len(text)} characters long; the limit is {limits.max_text_chars}")
    return text


def parse_texts(values: list[Any] | None, limits: Limits) -> list[str]:
    if values is None:
        return []
    if len(values) > limits.max_texts:
        raise bad(422, f"{len(values)} texts exceed the batch limit of {limits.max_texts}")
    texts = []
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise bad(422, f"texts[{i}] must be a string")
        texts.append(parse_text(value, limits, f"texts[{i}]"))
    return texts


def parse_labels(values: list[Any] | None, limits: Limits) -> list[str]:
    """Class names from a list and/or comma-separated strings; blanks dropped, duplicates refused."""
    if not values:
        raise bad(422, "labels are missing: give at least one class name (e.g. 'cat,dog')")
    names: list[str] = []
    for v in values:
        if not isinstance(v, str):
            raise bad(422, "labels must be strings")
        names.extend(p.strip() for p in v.split(","))
    names = [n for n in names if n]
    if not names:
        raise bad(422, "labels are empty: give at least one class name (e.g. 'cat,dog')")
    if len(names) > limits.max_labels:
        raise bad(422, f"{len(names)} labels exceed the limit of {limits.max_labels}")
    long = [n for n in names if len(n) > limits.max_text_chars]
    if long:
        raise bad(422, f"label {long[0][:40]!r}... is longer than {limits.max_text_chars} characters")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise bad(422, f"duplicate labels {dupes}")
    return names
