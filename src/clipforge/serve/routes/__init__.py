"""The API's routers, one per concern; `create_app` includes them all."""

from __future__ import annotations

from . import browse, classify, embed, health, images, page, search

ROUTERS = (page.router, health.router, browse.router, search.router, classify.router, embed.router, images.router)

__all__ = ["ROUTERS"]
