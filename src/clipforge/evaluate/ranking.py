"""Chunked similarity search: running top-k and ranks of the correct item, never an N x M matrix.

Retrieval over 1M images x 1M captions would need a 4 TB score matrix. Everything here walks
query chunks x gallery chunks, so memory is O(query_chunk x gallery_chunk) plus the per-query
results. Features may be numpy memmaps (read a chunk at a time) and are L2-normalised chunk by
chunk when `normalize=True`, so no normalised copy of a corpus is ever held.

Rank convention: rank = 1 + the number of non-positive gallery items scoring strictly higher than
the query's best positive (ties count in the query's favour). Recall@k = fraction with rank <= k.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

DEFAULT_QUERY_CHUNK = 1024
DEFAULT_GALLERY_CHUNK = 65536


def _rows(x: np.ndarray, start: int, stop: int, normalize: bool, device: torch.device) -> torch.Tensor:
    """Rows [start, stop) as a float32 tensor (read from a memmap if that is what `x` is)."""
    t = torch.from_numpy(np.array(x[start:stop], dtype=np.float32)).to(device)  # a writable copy
    return F.normalize(t, dim=-1) if normalize else t


#: Galleries up to this size are normalised once and kept in memory; larger ones are read per chunk.
GALLERY_IN_MEMORY_BYTES = 1 << 30


def _gallery(x: np.ndarray, normalize: bool, device: torch.device):
    """A function (start, stop) -> gallery rows as a tensor, preparing small galleries only once."""
    if x.shape[0] * x.shape[1] * 4 <= GALLERY_IN_MEMORY_BYTES:
        full = _rows(x, 0, len(x), normalize, device)
        return lambda start, stop: full[start:stop]
    return lambda start, stop: _rows(x, start, stop, normalize, device)


def _spans(n: int, chunk: int) -> Iterator[tuple[int, int]]:
    if chunk < 1:
        raise ValueError(f"chunk sizes must be positive, got {chunk}")
    for start in range(0, n, chunk):
        yield start, min(start + chunk, n)


def chunked_topk(
    queries: np.ndarray,
    gallery: np.ndarray,
    k: int,
    normalize: bool = True,
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    gallery_chunk: int = DEFAULT_GALLERY_CHUNK,
    device: str | torch.device = "cpu",
    progress: bool = False,
    desc: str = "top-k search",
) -> tuple[np.ndarray, np.ndarray]:
    """The `k` best gallery items per query by dot product (cosine if `normalize`): (scores, indices)."""
    dev = torch.device(device)
    k = min(k, len(gallery))
    scores = np.empty((len(queries), k), np.float32)
    indices = np.empty((len(queries), k), np.int64)
    if k == 0:
        return scores, indices
    rows = _gallery(gallery, normalize, dev)
    for qs, qe in tqdm(list(_spans(len(queries), query_chunk)), desc=desc, disable=not progress):
        q = _rows(queries, qs, qe, normalize, dev)
        best_s = torch.full((qe - qs, 0), float("-inf"), device=dev)
        best_i = torch.zeros((qe - qs, 0), dtype=torch.long, device=dev)
        for gs, ge in _spans(len(gallery), gallery_chunk):
            sim = q @ rows(gs, ge).t()
            s, i = sim.topk(min(k, ge - gs), dim=1)
            merged_s = torch.cat([best_s, s], dim=1)
            merged_i = torch.cat([best_i, i + gs], dim=1)
            best_s, pos = merged_s.topk(min(k, merged_s.shape[1]), dim=1)
            best_i = merged_i.gather(1, pos)
        scores[qs:qe], indices[qs:qe] = best_s.cpu().numpy(), best_i.cpu().numpy()
    return scores, indices


def ranks_by_group(
    queries: np.ndarray,
    gallery: np.ndarray,
    query_group: np.ndarray,
    gallery_group: np.ndarray,
    normalize: bool = True,
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    gallery_chunk: int = DEFAULT_GALLERY_CHUNK,
    device: str | torch.device = "cpu",
    progress: bool = False,
    desc: str = "ranking",
) -> np.ndarray:
    """Per query q: 1 + the number of gallery items outside q's group scoring strictly higher than q's best
    in-group item (its positives); 0 for a query with no positive in the gallery.

    The positives' scores are read from the very score matrices the competitors are counted in (the same
    query chunk times the same gallery chunk), so an exact duplicate of a positive scores the same bits
    and ties count in the query's favour, as the rank convention says.
    """
    dev = torch.device(device)
    qg_all = torch.from_numpy(np.asarray(query_group, np.int64))
    gg_all = torch.from_numpy(np.asarray(gallery_group, np.int64))
    gallery_spans = list(_spans(len(gallery), gallery_chunk))
    out = np.zeros(len(queries), np.int64)
    rows = _gallery(gallery, normalize, dev)
    for qs, qe in tqdm(list(_spans(len(queries), query_chunk)), desc=desc, disable=not progress):
        q = _rows(queries, qs, qe, normalize, dev)
        qg = qg_all[qs:qe].to(dev)[:, None]
        best = torch.full((qe - qs,), float("-inf"), device=dev)
        kept: tuple[tuple[int, int], torch.Tensor] | None = None  # the last score block, counted without recomputing
        for gs, ge in gallery_spans:  # pass 1: best positive score, only over blocks that hold positives
            same = gg_all[gs:ge].to(dev)[None, :] == qg
            if same.any():
                sim = q @ rows(gs, ge).t()
                best = torch.maximum(best, sim.masked_fill(~same, float("-inf")).amax(dim=1))
                kept = ((gs, ge), sim)
        n = torch.zeros(qe - qs, dtype=torch.long, device=dev)
        for gs, ge in gallery_spans:  # pass 2: competitors scoring strictly higher
            sim = kept[1] if kept is not None and kept[0] == (gs, ge) else q @ rows(gs, ge).t()
            n += ((sim > best[:, None]) & (gg_all[gs:ge].to(dev)[None, :] != qg)).sum(dim=1)
        ranks = 1 + n
        ranks[best == float("-inf")] = 0
        out[qs:qe] = ranks.cpu().numpy()
    return out


def rank_summary(ranks: np.ndarray, ks: tuple[int, ...]) -> dict[str, float | int]:
    """recall@k for each k, mean and median rank (1-based) and the number of queries."""
    r = np.asarray(ranks, np.float64)
    out: dict[str, float | int] = {f"recall@{k}": float((r <= k).mean()) if r.size else float("nan") for k in ks}
    out["mean_rank"] = float(r.mean()) if r.size else float("nan")
    out["median_rank"] = float(np.median(r)) if r.size else float("nan")
    out["n_queries"] = int(r.size)
    return out


def retrieval_ranks(
    image_features: np.ndarray,
    text_features: np.ndarray,
    caption_image: np.ndarray,
    normalize: bool = True,
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    gallery_chunk: int = DEFAULT_GALLERY_CHUNK,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(image→text ranks [n_images], text→image ranks [n_captions]) for captions owned by images.

    Image i is correctly retrieved by any caption c with `caption_image[c] == i` (its rank is that
    of its best caption); caption c's only correct image is `caption_image[c]`. Images without
    captions get rank 0 (no query): drop them before summarising.
    """
    n_img, n_txt = len(image_features), len(text_features)
    owner = np.asarray(caption_image, np.int64)
    if owner.shape != (n_txt,):
        raise ValueError(f"caption_image must have one entry per caption ({n_txt}), got shape {owner.shape}")
    if n_txt and (owner.min() < 0 or owner.max() >= n_img):
        raise ValueError(f"caption_image values must index the {n_img} images")
    image_ids = np.arange(n_img)
    chunking = (normalize, query_chunk, gallery_chunk, device, progress)
    t2i = ranks_by_group(text_features, image_features, owner, image_ids, *chunking, "text→image ranks")
    i2t = ranks_by_group(image_features, text_features, image_ids, owner, *chunking, "image→text ranks")
    return i2t, t2i
