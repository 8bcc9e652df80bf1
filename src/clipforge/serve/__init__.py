"""HTTP service and web page over a search index: `create_app(index_dir)` → FastAPI app.

Needs the `serve` extras: fastapi, uvicorn, python-multipart.
"""

from __future__ import annotations

from .app import create_app
from .limits import Limits
from .server import serve, serve_in_thread

__all__ = ["Limits", "create_app", "serve", "serve_in_thread"]
