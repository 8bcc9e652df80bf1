"""Corpus embedding and nearest-neighbour search.

    from clipforge.index import build_index, add_to_index, SearchIndex
    build_index(["photos/"], "photos.idx", model="my-model/")     # or webdataset shards, a CSV
    add_to_index("photos.idx", ["more-photos/"])
    hits = SearchIndex.open("photos.idx").search_text("a red car", k=10)

Inputs are read by `clipforge.data.inputs` (specs → items). Modules: `store` (directory layout), `embedder` (one shard),
`build` (plan/embed/merge, torchrun-aware), `ann` (faiss index choice), `search` (queries).
Names are imported lazily so `clipforge.index.ann` does not pull in torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "BuildOptions": "build",
    "BuildReport": "build",
    "build_index": "build",
    "add_to_index": "build",
    "SearchIndex": "search",
    "Hit": "search",
    "IndexSpec": "ann",
    "choose_index": "ann",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
