"""`SearchIndex`: open an index directory and query it by text, image or vector.

    index = SearchIndex.open("corpus.idx")
    hits = index.search_text("a red circle", k=5)        # list[Hit], best first
    hits = index.search_image("query.png", k=5)
    batch = index.search_vector(np.random.randn(3, index.dim), k=5)   # list[list[Hit]]

Scores are cosine similarities (inner products of L2-normalised vectors). Results name items by
their integer `id`; `item(id)` gives the metadata and `image_bytes(id)` the indexed image.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from ..api import load
from ..data.images import ImageRef
from ..images import load_image
from ..runtime import as_backend, as_precision
from ..zeroshot import ZeroShotClassifier, check_queries, warn_unknown_words
from . import ann
from .store import IndexStore, check_model_weights, read_table

TARGETS = ("image", "caption")


@dataclass
class Hit:
    """One search result."""

    id: int
    score: float
    path: str
    key: str
    caption: str | None = None
    member: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SearchIndex:
    """A read-only, thread-safe view of an index directory; the model is loaded on first use."""

    def __init__(
        self,
        store: IndexStore,
        manifest: dict[str, Any],
        model: str | Path | None = None,
        device: str | None = None,
        precision: str = "fp32",
        backend: str | None = None,
    ) -> None:
        self.store = store
        self.manifest = manifest
        self.spec = ann.IndexSpec.from_dict(manifest["index"])
        self.dim = int(manifest["dim"])
        table = read_table(store.metadata_path).to_pydict()
        self._ids = np.asarray(table["id"], dtype=np.int64)
        self._paths: list[str] = table["path"]
        self._keys: list[str] = table["key"]
        self._captions: list[str | None] = table["caption"]
        self._members: list[str | None] = table["member"]
        self._offsets: list[int] = table["offset"]
        self._sizes: list[int] = table["size"]
        if np.any(np.diff(self._ids) <= 0):
            raise ValueError(f"{store.root}: metadata ids are not increasing; rebuild the index")
        self._indexes: dict[str, Any] = {"image": ann.read_index(str(store.faiss_path("image")))}
        if manifest.get("captions"):
            self._indexes["caption"] = ann.read_index(str(store.faiss_path("caption")))
        for index in self._indexes.values():
            ann.configure(index, self.spec)
            if index.ntotal != len(self._ids):
                raise ValueError(
                    f"{store.root}: the faiss index holds {index.ntotal} rows but the metadata {len(self._ids)}; "
                    "a merge was interrupted: re-run the last build/add command to finish it"
                )
        shards = range(int(manifest["indexed_shards"]))
        self._shard_rows = np.cumsum([0] + [int(store.load_shard(s).shape[0]) for s in shards])
        self._model_path = model if model is not None else manifest["model"]["path"]
        recorded = manifest["model"] if model is None else {}
        self._architecture = {"config": recorded.get("config"), "activation": recorded.get("activation")}
        self._device, self._precision, self._backend = device, precision, backend
        self._model = None
        self._classifiers: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        directory: str | Path,
        model: str | Path | None = None,
        device: str | None = None,
        precision: str = "fp32",
        backend: str | None = None,
    ) -> "SearchIndex":
        """Open a built index; `model` overrides the checkpoint recorded at build time (and the architecture
        options recorded with it); `precision` and `backend` choose how queries are embedded and `device`
        where (default: CUDA when present, as `clipforge.load`).

        While an `index add` is unfinished, the index as of its last completed run is served.
        """
        store = IndexStore(directory)
        manifest = store.read()
        if not manifest.get("index"):
            raise ValueError(f"{directory}: the index is not finished; re-run the build command to resume it")
        return cls(store, manifest, model, device, precision, backend)

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(self._indexes)

    # -- model ---------------------------------------------------------------------------
    def model(self):
        """(model, preprocess, tokenizer), loaded once."""
        with self._lock:
            if self._model is None:
                precision, backend = as_precision(self._precision), as_backend(self._backend)
                loaded = load(self._model_path, self._device, precision, backend=backend, **self._architecture)
                if loaded[0].config.embed_dim != self.dim:
                    raise ValueError(f"the model embeds to {loaded[0].config.embed_dim} dims, the index {self.dim}")
                check_model_weights(self.store.root, self.manifest["model"], loaded[0])
                self._model = loaded
            return self._model

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised text embeddings [len(texts), dim]."""

        model, _, tokenizer = self.model()
        with self._lock, torch.no_grad():
            tokens = tokenizer(list(texts), truncate="eot").to(model.device)
            return model.encode_text(tokens, normalize=True).float().cpu().numpy()

    def query_warnings(self, texts: Sequence[str]) -> list[str]:
        """Messages about words of text queries this index's model does not know (see
        `zeroshot.check_queries`); [] when it knows them all."""
        _, _, tokenizer = self.model()
        return check_queries(tokenizer, list(texts))

    def embed_images(self, images: Sequence[Any]) -> np.ndarray:
        """L2-normalised embeddings of images given as paths, bytes or PIL images."""

        model, preprocess, _ = self.model()
        pixels = torch.stack([preprocess(im if isinstance(im, Image.Image) else load_image(im)) for im in images])
        with self._lock, torch.no_grad():
            out = model.encode_image(pixels.to(device=model.device, dtype=model.dtype), normalize=True)
            return out.float().cpu().numpy()

    def zero_shot(self, labels: Sequence[str], templates: str | Sequence[str] = "openai7"):
        """A `ZeroShotClassifier` for `labels` with this index's model (the last 32 are cached).

        Unknown label words are in the classifier's `.warnings` (not emitted: a service returns them);
        labels the model cannot tell apart raise ValueError."""

        key = (tuple(labels), templates if isinstance(templates, str) else tuple(templates))
        model, _, tokenizer = self.model()
        with self._lock, torch.no_grad():
            cached = self._classifiers.pop(key, None)
            if cached is None:
                cached = ZeroShotClassifier.build(model, tokenizer, list(labels), templates, warn=False)
            self._classifiers[key] = cached  # most recently used last
            while len(self._classifiers) > 32:
                self._classifiers.pop(next(iter(self._classifiers)))
            return cached

    # -- search --------------------------------------------------------------------------
    def search_vector(self, vectors: np.ndarray, k: int = 10, target: str = "image"):
        """Nearest items to one vector ([dim] → list[Hit]) or a batch ([n, dim] → list[list[Hit]])."""
        if target not in self._indexes:
            raise ValueError(f"target {target!r}: this index has {', '.join(self._indexes)}")
        if k < 1:
            raise ValueError("k must be at least 1")
        q = np.asarray(vectors, dtype=np.float32)
        single = q.ndim == 1
        q = np.atleast_2d(q)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"query vectors must have {self.dim} dimensions, got shape {np.shape(vectors)}")
        if not np.all(np.isfinite(q)):
            raise ValueError("query vectors contain NaN or infinity")
        norms = np.linalg.norm(q, axis=1, keepdims=True)
        q = np.ascontiguousarray(q / np.where(norms > 0, norms, 1))
        k = min(k, len(self))
        fetch = k * (self.spec.rerank or 1)
        scores, rows = self._indexes[target].search(q, min(fetch, len(self)))
        if self.spec.rerank:
            scores, rows = self._rerank(q, rows, k, target)
        out = [
            [self._hit(int(r), float(s)) for s, r in zip(srow, rrow) if r >= 0][:k] for srow, rrow in zip(scores, rows)
        ]
        return out[0] if single else out

    def search_text(self, text: str | Sequence[str], k: int = 10, target: str = "image"):
        """Items matching a text (→ list[Hit]) or each of several texts (→ list[list[Hit]])."""
        texts = [text] if isinstance(text, str) else list(text)
        warn_unknown_words(self.query_warnings(texts))
        hits = self.search_vector(self.embed_texts(texts), k, target)
        return hits[0] if isinstance(text, str) else hits

    def search_image(self, image: Any, k: int = 10, target: str = "image") -> list[Hit]:
        """Items similar to one image (path, bytes or PIL image)."""
        return self.search_vector(self.embed_images([image])[0], k, target)

    def _rerank(self, q: np.ndarray, rows: np.ndarray, k: int, target: str):
        """Re-score approximate candidates exactly with the stored embeddings."""
        suffix = ".npy" if target == "image" else ".captions.npy"
        scores_out = np.full((len(q), k), -np.inf, np.float32)
        rows_out = np.full((len(q), k), -1, np.int64)
        for i, cand in enumerate(rows):
            cand = np.unique(cand[cand >= 0])
            exact = self.vectors(cand, suffix) @ q[i]
            best = np.argsort(-exact)[:k]
            scores_out[i, : len(best)], rows_out[i, : len(best)] = exact[best], cand[best]
        return scores_out, rows_out

    # -- items ---------------------------------------------------------------------------
    def _hit(self, row: int, score: float) -> Hit:
        return Hit(
            int(self._ids[row]), score, self._paths[row], self._keys[row], self._captions[row], self._members[row]
        )

    def row_of(self, item_id: int) -> int:
        """Row of an item id; KeyError if the id is not in the index."""
        if not 0 <= item_id < 2**63:
            raise KeyError(f"no item with id {item_id}")
        row = int(np.searchsorted(self._ids, item_id))
        if row >= len(self._ids) or self._ids[row] != item_id:
            raise KeyError(f"no item with id {item_id}")
        return row

    def browse(self, offset: int = 0, limit: int = 24) -> list[Hit]:
        """Items in index order from row `offset` (at most `limit`; score 0.0: nothing was asked)."""
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must be at least 0")
        return [self._hit(row, 0.0) for row in range(offset, min(offset + limit, len(self)))]

    def item(self, item_id: int) -> dict[str, Any]:
        """Metadata of one item: id, path, key, caption, member."""
        hit = self._hit(self.row_of(item_id), float("nan"))
        data = hit.to_dict()
        data.pop("score")
        return data

    def image_bytes(self, item_id: int) -> bytes:
        """The indexed image of an item, read from its file or tar shard (never from a client path)."""
        row = self.row_of(item_id)
        return ImageRef(self._paths[row], self._members[row], self._offsets[row], self._sizes[row]).read_bytes()

    def vectors(self, rows: np.ndarray, suffix: str = ".npy") -> np.ndarray:
        """Stored embeddings of index rows (sorted or not), read from the shard files."""
        rows = np.asarray(rows, dtype=np.int64)
        shard = np.searchsorted(self._shard_rows, rows, side="right") - 1
        out = np.empty((len(rows), self.dim), np.float32)
        for s in np.unique(shard):
            sel = shard == s
            out[sel] = self.store.load_shard(int(s), suffix)[rows[sel] - self._shard_rows[s]]
        return out

    def vector(self, item_id: int) -> np.ndarray:
        """The stored image embedding of one item."""
        return self.vectors(np.array([self.row_of(item_id)]))[0]

    def describe(self) -> dict[str, Any]:
        """A summary for /health and `clipforge index info`."""
        return {
            "items": len(self),
            "dim": self.dim,
            "index": self.spec.to_dict(),
            "targets": list(self.targets),
            "model": self.manifest["model"].get("path"),
            "skipped": int(self.manifest.get("skipped", 0)),
        }

    def __repr__(self) -> str:
        return f"SearchIndex({str(self.store.root)!r}, items={len(self)}, index={self.spec.kind})"
