"""What every response and request passes through: Host validation, cross-site refusal, security headers.

* `Host` must name this server (by default a loopback name: 127.0.0.1, localhost, ::1), so a page on
  another site cannot reach a loopback service through DNS rebinding (its Host is the attacker's name).
* A state-changing request (anything but GET/HEAD/OPTIONS) from another origin is refused: browsers send
  cross-site form POSTs without a preflight, so CORS alone would not stop them. A request is cross-site
  when its `Origin` differs from its `Host`, or when the browser says so (`Sec-Fetch-Site: cross-site`).
  Clients that are not browsers send neither header and are unaffected.
* Every response says `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`,
  `Referrer-Policy: no-referrer`, and (except the interactive docs, which load their scripts from a CDN)
  a `Content-Security-Policy` that allows this server's own scripts, styles and images only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_DOC_PATHS = ("/docs", "/redoc")
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]


def host_name(value: str) -> str:
    """The host part of a Host header or URL netloc, lower-case: '[::1]:8000' -> '::1', 'A.b.:80' -> 'a.b'."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


class Guard:
    """ASGI middleware applying the rules of this module (see the module docstring)."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] = LOOPBACK_HOSTS) -> None:
        self.app = app
        self.allowed = {host_name(h) for h in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        problem = None
        if "*" not in self.allowed and host_name(host) not in self.allowed:
            problem = (400, f"the Host header {host[:100]!r} does not name this server")
        elif scope.get("method", "GET") not in _SAFE_METHODS:
            origin = headers.get("origin")
            if headers.get("sec-fetch-site") == "cross-site":
                problem = (403, "cross-site requests are refused")
            elif origin is not None and (origin == "null" or urlsplit(origin).netloc.lower() != host.lower()):
                problem = (403, f"requests from origin {origin[:100]!r} are refused (not this server's origin)")
        docs = scope.get("path", "").startswith(_DOC_PATHS)

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                ]
                if not docs:
                    extra.append((b"content-security-policy", CSP.encode()))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        if problem is None:
            await self.app(scope, receive, send_with_headers)
            return
        status, detail = problem
        body = json.dumps({"detail": detail}).encode()
        await send_with_headers(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
