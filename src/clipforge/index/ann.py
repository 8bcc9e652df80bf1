"""Choosing, building and configuring faiss indexes over L2-normalised embeddings (inner product = cosine).

Automatic choice by corpus size `n` (measurements behind it: `docs/search.md`, `bench/bench_index.py`):

- n < 100k: `flat`, exact IndexFlatIP. Brute force costs a few ms per query; recall is 1.
- 100k <= n < 2M: `hnsw`, IndexHNSWFlat (M=32, efConstruction=80, efSearch=128): the lowest
  latency at recall@10 >= 0.95; ~2.3 KB per 512-d vector; the slowest to build.
- 2M <= n < 5M: `ivf_flat`, IVF with ~4 sqrt(n) lists (nprobe = lists/32): faster to build
  (k-means on a sample), full vectors (2 KB each at d=512: 10 GB at 5M), no graph memory.
- n >= 5M: `ivf_pq`, IVF + product quantisation (~d/8 bytes per vector); searches fetch 8k
  candidates and re-rank them exactly with the stored embeddings.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable

import numpy as np

from ..extras import install_hint
from ..registry import Registry

#: Corpus sizes at which the automatic choice moves to the next index kind.
FLAT_MAX = 100_000
HNSW_MAX = 2_000_000
IVF_FLAT_MAX = 5_000_000

#: Training points per IVF list (faiss warns below 39; more than 256 brings little).
TRAIN_POINTS_PER_LIST = 64
MAX_TRAIN_POINTS = 262_144


def _faiss():
    try:
        import faiss  # optional (`index` extra): only ANN indexes need faiss
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(f"clipforge.index needs faiss: {install_hint('faiss', 'index')}") from exc
    return faiss


@dataclass
class IndexSpec:
    """Which faiss index to build and how to search it; stored in `index.json`."""

    kind: str = "flat"
    nlist: int | None = None  # IVF lists
    nprobe: int | None = None  # IVF lists visited per query
    pq_m: int | None = None  # PQ sub-quantisers (bytes per vector at 8 bits)
    pq_bits: int | None = None
    hnsw_m: int | None = None  # HNSW neighbours per node
    ef_construction: int | None = None
    ef_search: int | None = None
    rerank: int | None = None  # candidates per result re-scored exactly (PQ only)
    metric: str = "inner_product"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "IndexSpec":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def exact(self) -> bool:
        return self.kind == "flat"


def _pow2_near(x: float) -> int:
    return int(2 ** round(math.log2(max(x, 1.0))))


def _pq_m(dim: int) -> int:
    """Sub-quantisers: ~8 dimensions each (64 bytes at d=512), at least 16 for small `dim`."""
    target = max(1, dim // 8, min(16, dim // 2))
    return max(m for m in range(1, target + 1) if dim % m == 0)


def _ivf_lists(n: int) -> tuple[int, int]:
    """(lists, lists probed): ~4 sqrt(n) lists (a power of two), never more than n / 39 so each gets training points."""
    nlist = max(1, min(_pow2_near(4 * math.sqrt(max(n, 1))), max(1, n // 39)))
    return nlist, max(1, min(nlist, nlist // 32 if nlist >= 256 else nlist // 4 or 1))


class IndexType:
    """One kind of faiss index: its parameters for a corpus, the empty index, its search settings."""

    def spec(self, n: int, dim: int) -> IndexSpec:
        raise NotImplementedError

    def new(self, faiss: Any, spec: IndexSpec, dim: int) -> Any:
        raise NotImplementedError

    def train_size(self, spec: IndexSpec) -> int:
        """Vectors to sample for training (0: the index needs none)."""
        return 0

    def configure(self, faiss: Any, index: Any, spec: IndexSpec) -> None:
        """Apply the search-time parameters recorded in `spec`."""


class Flat(IndexType):
    def spec(self, n: int, dim: int) -> IndexSpec:
        return IndexSpec("flat")

    def new(self, faiss: Any, spec: IndexSpec, dim: int) -> Any:
        return faiss.IndexFlatIP(dim)


class HNSW(IndexType):
    def spec(self, n: int, dim: int) -> IndexSpec:
        return IndexSpec("hnsw", hnsw_m=32, ef_construction=80, ef_search=128)

    def new(self, faiss: Any, spec: IndexSpec, dim: int) -> Any:
        index = faiss.IndexHNSWFlat(dim, spec.hnsw_m or 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = spec.ef_construction or 80
        return index

    def configure(self, faiss: Any, index: Any, spec: IndexSpec) -> None:
        index.hnsw.efSearch = spec.ef_search or 128


class IVFFlat(IndexType):
    def spec(self, n: int, dim: int) -> IndexSpec:
        nlist, nprobe = _ivf_lists(n)
        return IndexSpec("ivf_flat", nlist=nlist, nprobe=nprobe)

    def new(self, faiss: Any, spec: IndexSpec, dim: int) -> Any:
        return faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, spec.nlist, faiss.METRIC_INNER_PRODUCT)

    def train_size(self, spec: IndexSpec) -> int:
        return min(TRAIN_POINTS_PER_LIST * (spec.nlist or 1), MAX_TRAIN_POINTS)

    def configure(self, faiss: Any, index: Any, spec: IndexSpec) -> None:
        faiss.extract_index_ivf(index).nprobe = spec.nprobe or 1


class IVFPQ(IVFFlat):
    def spec(self, n: int, dim: int) -> IndexSpec:
        if n < 16:
            raise ValueError(f"an ivf_pq index needs at least 16 vectors, got {n}; use flat")
        nlist, nprobe = _ivf_lists(n)
        bits = 8 if n >= 39 * 256 else 4  # faiss wants >= 39 training points per codebook centroid
        return IndexSpec("ivf_pq", nlist=nlist, nprobe=nprobe, pq_m=_pq_m(dim), pq_bits=bits, rerank=8)

    def new(self, faiss: Any, spec: IndexSpec, dim: int) -> Any:
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFPQ(quantizer, dim, spec.nlist, spec.pq_m, spec.pq_bits, faiss.METRIC_INNER_PRODUCT)
        index.do_polysemous_training = False  # slow, and only useful for Hamming-filtered search
        return index

    def train_size(self, spec: IndexSpec) -> int:
        return min(max(TRAIN_POINTS_PER_LIST * (spec.nlist or 1), 64 * 2 ** (spec.pq_bits or 8)), MAX_TRAIN_POINTS)


#: index kinds by name (`--index-type`, `IndexSpec.kind`), in order of corpus size; "auto" picks by size
INDEX_KINDS: Registry[IndexType] = Registry("index type")
INDEX_KINDS.register("flat", Flat(), "exact inner product (brute force)")
INDEX_KINDS.register("hnsw", HNSW(), "graph: the lowest latency at high recall, the slowest build")
INDEX_KINDS.register("ivf_flat", IVFFlat(), "inverted lists over full vectors: fast build, no graph memory")
INDEX_KINDS.register("ivf_pq", IVFPQ(), "inverted lists over product-quantised codes, re-ranked exactly")


def choose_index(n: int, dim: int, kind: str = "auto") -> IndexSpec:
    """The index for `n` vectors of `dim` dimensions; `kind='auto'` applies the size thresholds."""
    if kind == "auto":
        kind = "flat" if n < FLAT_MAX else "hnsw" if n < HNSW_MAX else "ivf_flat" if n < IVF_FLAT_MAX else "ivf_pq"
    return INDEX_KINDS.get(kind).spec(n, dim)


def new_index(spec: IndexSpec, dim: int):
    """An empty faiss index for `spec` (IVF kinds still need `train`)."""
    return INDEX_KINDS.get(spec.kind).new(_faiss(), spec, dim)


def train_size(spec: IndexSpec) -> int:
    """How many vectors to sample for training (0 for indexes that need none)."""
    return INDEX_KINDS.get(spec.kind).train_size(spec)


def build_faiss(spec: IndexSpec, dim: int, chunks: Iterable[np.ndarray], train: np.ndarray | None = None):
    """Build `spec` from float32 chunks (added in order, so row i of the corpus is faiss id i)."""
    index = new_index(spec, dim)
    if not index.is_trained:
        if train is None or len(train) == 0:
            raise ValueError(f"a {spec.kind} index needs training vectors")
        index.train(np.ascontiguousarray(train, dtype=np.float32))
    for chunk in chunks:
        if len(chunk):
            index.add(np.ascontiguousarray(chunk, dtype=np.float32))
    configure(index, spec)
    return index


def configure(index, spec: IndexSpec) -> None:
    """Apply the search-time parameters (nprobe, efSearch) recorded in `spec`."""
    INDEX_KINDS.get(spec.kind).configure(_faiss(), index, spec)


def sample_rows(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Sorted distinct row numbers for a training sample (all rows when `size >= n`)."""
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def write_index(index, path: str) -> None:
    _faiss().write_index(index, path)


def read_index(path: str):
    return _faiss().read_index(path)
