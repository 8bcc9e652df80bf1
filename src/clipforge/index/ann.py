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
from typing import Any, Iterable, Literal

import numpy as np

from ..extras import install_hint

IndexKind = Literal["flat", "ivf_flat", "ivf_pq", "hnsw"]
INDEX_KINDS: tuple[str, ...] = ("flat", "hnsw", "ivf_flat", "ivf_pq")

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


def choose_index(n: int, dim: int, kind: str = "auto") -> IndexSpec:
    """The index for `n` vectors of `dim` dimensions; `kind='auto'` applies the size thresholds."""
    if kind == "auto":
        kind = "flat" if n < FLAT_MAX else "hnsw" if n < HNSW_MAX else "ivf_flat" if n < IVF_FLAT_MAX else "ivf_pq"
    if kind not in INDEX_KINDS:
        raise ValueError(f"index type {kind!r}: expected auto or one of {', '.join(INDEX_KINDS)}")
    if kind == "flat":
        return IndexSpec("flat")
    if kind == "hnsw":
        return IndexSpec("hnsw", hnsw_m=32, ef_construction=80, ef_search=128)
    # IVF: ~4 sqrt(n) lists (a power of two), never more than n / 39 so each list gets training points.
    nlist = max(1, min(_pow2_near(4 * math.sqrt(max(n, 1))), max(1, n // 39)))
    nprobe = max(1, min(nlist, nlist // 32 if nlist >= 256 else nlist // 4 or 1))
    if kind == "ivf_flat":
        return IndexSpec("ivf_flat", nlist=nlist, nprobe=nprobe)
    if n < 16:
        raise ValueError(f"an ivf_pq index needs at least 16 vectors, got {n}; use flat")
    bits = 8 if n >= 39 * 256 else 4  # faiss wants >= 39 training points per codebook centroid
    return IndexSpec("ivf_pq", nlist=nlist, nprobe=nprobe, pq_m=_pq_m(dim), pq_bits=bits, rerank=8)


def new_index(spec: IndexSpec, dim: int):
    """An empty faiss index for `spec` (IVF kinds still need `train`)."""
    faiss = _faiss()
    ip = faiss.METRIC_INNER_PRODUCT
    if spec.kind == "flat":
        return faiss.IndexFlatIP(dim)
    if spec.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, spec.hnsw_m or 32, ip)
        index.hnsw.efConstruction = spec.ef_construction or 80
        return index
    quantizer = faiss.IndexFlatIP(dim)
    if spec.kind == "ivf_flat":
        return faiss.IndexIVFFlat(quantizer, dim, spec.nlist, ip)
    if spec.kind == "ivf_pq":
        index = faiss.IndexIVFPQ(quantizer, dim, spec.nlist, spec.pq_m, spec.pq_bits, ip)
        index.do_polysemous_training = False  # slow, and only useful for Hamming-filtered search
        return index
    raise ValueError(f"unknown index kind {spec.kind!r}")


def train_size(spec: IndexSpec) -> int:
    """How many vectors to sample for training (0 for indexes that need none)."""
    if spec.kind not in ("ivf_flat", "ivf_pq"):
        return 0
    need = TRAIN_POINTS_PER_LIST * (spec.nlist or 1)
    if spec.kind == "ivf_pq":
        need = max(need, 64 * 2 ** (spec.pq_bits or 8))
    return min(need, MAX_TRAIN_POINTS)


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
    faiss = _faiss()
    if spec.kind in ("ivf_flat", "ivf_pq"):
        faiss.extract_index_ivf(index).nprobe = spec.nprobe or 1
    elif spec.kind == "hnsw":
        index.hnsw.efSearch = spec.ef_search or 128


def sample_rows(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Sorted distinct row numbers for a training sample (all rows when `size >= n`)."""
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def write_index(index, path: str) -> None:
    _faiss().write_index(index, path)


def read_index(path: str):
    return _faiss().read_index(path)
