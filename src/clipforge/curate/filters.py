"""Filters that judge image–text rows by their embeddings: DataComp's CLIP-score filter and SemDeDup.

- **CLIP score** (DataComp): the cosine between a row's image and caption embeddings; keep rows at or
  above `min_score`, or the best `top_fraction` of the rows (ties broken by row order).
- **SemDeDup** (Abbas et al. 2023): k-means over the L2-normalised image embeddings (faiss,
  spherical); within each cluster the members are ordered by their cosine to the centroid, lowest
  first, and a member is a duplicate when its cosine to an earlier member reaches `threshold` (the
  paper's 1 − ε): of each near-duplicate group the member least typical of its cluster is kept.
  Similar images in different clusters are not compared (that is what makes it scale); with one
  cluster the rule is exact brute force.

Rows whose image cannot be read (or that have no caption, for the score) are removed and counted by
reason. Both write the kept rows in the input's format and order, a JSON report and a PNG histogram.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..extras import require
from ..files import write_json_atomic
from ..runtime.protocol import Encoder
from .features import RowFeatures, embed_rows
from .manifest import ManifestStream, ManifestWriter
from .metaclip import CurationResult

#: rows compared at once against the earlier members of a cluster (bounds memory to cluster × block)
DEDUP_BLOCK = 1024


def clip_scores(rows: RowFeatures) -> np.ndarray:
    """Image–caption cosine per row; NaN where the image was unreadable or the caption missing."""
    if rows.captions is None or rows.has_caption is None:
        raise ValueError("CLIP scores need caption features (embed_rows with a tokenizer)")
    scores = (rows.images * rows.captions).sum(axis=1)
    return np.where(rows.readable & rows.has_caption, scores, np.nan).astype(np.float32)


def score_keep(scores: np.ndarray, min_score: float | None = None, top_fraction: float | None = None) -> np.ndarray:
    """Rows to keep: score >= `min_score`, or the `top_fraction` best (NaN scores never kept)."""
    if (min_score is None) == (top_fraction is None):
        raise ValueError("give exactly one of min_score (--clip-score-min) and top_fraction (--top-fraction)")
    valid = ~np.isnan(scores)
    if min_score is not None:
        return valid & (np.nan_to_num(scores, nan=-np.inf) >= min_score)
    assert top_fraction is not None
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction (--top-fraction) must be in (0, 1], got {top_fraction}")
    n_keep = math.ceil(top_fraction * int(valid.sum()))
    order = np.lexsort((np.arange(len(scores)), -np.nan_to_num(scores, nan=-np.inf)))  # best first, then row
    keep = np.zeros(len(scores), bool)
    keep[order[:n_keep]] = True
    return keep & valid


@dataclass
class Duplicates:
    """Per row: the row it duplicates (-1 for a kept row), the cosine to the most similar earlier member of its
    cluster (NaN for the first member and unreadable rows), its cluster (-1: unreadable)."""

    duplicate_of: np.ndarray
    similarity: np.ndarray
    cluster: np.ndarray

    @property
    def removed(self) -> np.ndarray:
        return self.duplicate_of >= 0


def cluster_features(features: np.ndarray, clusters: int, seed: int = 0) -> np.ndarray:
    """Spherical k-means assignments of unit vectors (faiss), `clusters` at most the number of vectors."""
    k = max(1, min(clusters, len(features)))
    if k == 1:
        return np.zeros(len(features), np.int64)
    try:
        import faiss  # optional (`index` extra): only de-duplication clusters with it
    except ImportError as exc:
        raise ImportError("clipforge curate dedup needs faiss: pip install 'clipforge[index]'") from exc
    x = np.ascontiguousarray(features, dtype=np.float32)
    kmeans = faiss.Kmeans(x.shape[1], k, niter=20, seed=seed, spherical=True, verbose=False)
    kmeans.train(x)
    return kmeans.index.search(x, 1)[1][:, 0].astype(np.int64)


def semdedup(
    features: np.ndarray, valid: np.ndarray, threshold: float, clusters: int = 1, seed: int = 0, progress: bool = False
) -> Duplicates:
    """SemDeDup over unit-norm `features` [N, d] (rows where `valid` is False take no part)."""
    if not -1 <= threshold <= 1:
        raise ValueError(f"the duplicate threshold is a cosine in [-1, 1], got {threshold}")
    if clusters < 1:
        raise ValueError(f"clusters must be at least 1, got {clusters}")
    n = len(features)
    duplicate_of = np.full(n, -1, np.int64)
    similarity = np.full(n, np.nan, np.float32)  # NaN: no earlier member to compare with
    cluster = np.full(n, -1, np.int64)
    rows = np.flatnonzero(valid)
    if not len(rows):
        return Duplicates(duplicate_of, similarity, cluster)
    x = torch.from_numpy(np.ascontiguousarray(features[rows], dtype=np.float32))
    cluster[rows] = cluster_features(x.numpy(), clusters, seed)
    for c in tqdm(np.unique(cluster[rows]).tolist(), desc="dedup: clusters", disable=not progress):
        members = rows[cluster[rows] == c]
        local = x[torch.from_numpy(np.searchsorted(rows, members))]
        centroid = torch.nn.functional.normalize(local.double().mean(0), dim=0)
        typical = np.round((local.double() @ centroid).numpy(), 6)  # rounded: exact copies tie, then row order
        order = torch.from_numpy(np.lexsort((members, typical)))  # least typical first: kept first
        ordered, ids = local[order], members[order.numpy()]
        for start in range(1, len(ids), DEDUP_BLOCK):
            block = ordered[start : start + DEDUP_BLOCK]
            sims = block @ ordered[: start + len(block)].t()  # [b, earlier + b]
            positions = torch.arange(start, start + len(block))
            mask = torch.arange(sims.shape[1])[None, :] >= positions[:, None]  # only earlier members count
            sims = sims.masked_fill(mask, -2.0)
            best, where = sims.max(dim=1)
            hit = (best >= threshold).numpy()
            duplicate_of[ids[start : start + len(block)][hit]] = ids[where.numpy()[hit]]
            similarity[ids[start : start + len(block)]] = best.clamp(min=-1).numpy()
    return Duplicates(duplicate_of, similarity, cluster)


class FilterResult(CurationResult):
    """What a filter wrote (kept rows, report, plot) and its report."""

    def summary(self) -> str:
        r = self.report
        removed = ", ".join(f"{k} {v}" for k, v in r["removed"].items()) or "none"
        lines = [f"{r['method']}: kept {r['rows_out']} of {r['rows_in']} rows (removed: {removed})"]
        lines.append(f"  {self.manifest}")
        lines.append(f"  report {self.report_path}" + (f", plot {self.plot}" if self.plot else ""))
        return "\n".join(lines)


def _write(stream: ManifestStream, out: Path, name: str, keep: np.ndarray, chunk_size: int) -> Path:
    manifest = out / f"{name}{stream.path.suffix.lower()}"
    with ManifestWriter(stream, manifest) as writer:
        for chunk in stream.chunks(chunk_size):
            writer.write(chunk, keep[chunk.first_row : chunk.first_row + len(chunk.texts)])
    return manifest


def _prepare(
    data: str | Path, out: str | Path, plot: bool, image_column: str | None, caption_column: str | None
) -> tuple[ManifestStream, Path]:
    stream = ManifestStream(data, caption_column, image_column)
    if stream.image_column is None:
        raise ValueError(f"{stream.path}: no image column (name it with --image-column)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a directory")
    if plot:
        from .plot import check_plotting  # optional: matplotlib only when a plot is asked for

        check_plotting()
    return stream, out


def filter_by_clip_score(
    data: str | Path,
    out: str | Path,
    encoder: Encoder,
    preprocess: Callable,
    tokenizer: Callable,
    min_score: float | None = None,
    top_fraction: float | None = None,
    chunk_size: int = 10000,
    batch_size: int = 64,
    image_column: str | None = None,
    caption_column: str | None = None,
    progress: bool = True,
    plot: bool = True,
) -> FilterResult:
    """Keep the rows whose image–caption CLIP score passes; writes out/filtered.<ext>, filter.json, clip_scores.png."""
    score_keep(np.zeros(0, np.float32), min_score, top_fraction)  # the options are checked before any work
    stream, out = _prepare(data, out, plot, image_column, caption_column)
    rows = embed_rows(stream, encoder, preprocess, tokenizer, chunk_size, batch_size, progress)
    scores = clip_scores(rows)
    keep = score_keep(scores, min_score, top_fraction)
    assert rows.has_caption is not None
    removed = {
        "unreadable image": int((~rows.readable).sum()),
        "no caption": int((rows.readable & ~rows.has_caption).sum()),
        "score below threshold": int((~np.isnan(scores) & ~keep).sum()),
    }
    manifest = _write(stream, out, "filtered", keep, chunk_size)
    kept_scores = scores[keep]
    cut = float(kept_scores.min()) if len(kept_scores) else None
    report = {
        "method": "clip-score",
        "data": str(stream.path),
        "model": encoder.name or "model",
        "runtime": encoder.runtime,
        "rule": "keep score >= min_score" if min_score is not None else "keep the top_fraction best scores",
        "min_score": min_score,
        "top_fraction": top_fraction,
        "lowest_kept_score": cut,
        "rows_in": len(rows),
        "rows_out": int(keep.sum()),
        "removed": {k: v for k, v in removed.items() if v},
        "score_quantiles": _quantiles(scores),
        "skipped_examples": rows.skipped.items[:20],
    }
    report_path = out / "filter.json"
    write_json_atomic(report_path, report)
    plot_path = None
    if plot:
        from .plot import plot_histogram  # optional: matplotlib only when a plot is asked for

        threshold = min_score if min_score is not None else cut
        plot_path = plot_histogram(
            scores[~np.isnan(scores)],
            threshold,
            out / "clip_scores.png",
            "image–caption CLIP score",
            f"CLIP scores ({int(keep.sum())} of {len(rows)} kept)",
        )
    return FilterResult(manifest, report_path, plot_path, report)


def deduplicate(
    data: str | Path,
    out: str | Path,
    encoder: Encoder,
    preprocess: Callable,
    threshold: float = 0.95,
    clusters: int | None = None,
    seed: int = 0,
    chunk_size: int = 10000,
    batch_size: int = 64,
    image_column: str | None = None,
    progress: bool = True,
    plot: bool = True,
) -> FilterResult:
    """SemDeDup on the rows' images; writes out/deduplicated.<ext>, dedup.json (every removed row with the row
    it duplicates and their cosine) and dedup_similarity.png. `clusters` defaults to about sqrt(rows / 10)."""
    if not -1 <= threshold <= 1:
        raise ValueError(f"--threshold is a cosine in [-1, 1], got {threshold}")
    if clusters != 1:
        require(["faiss"], "index")  # k-means; checked before any embedding work
    stream, out = _prepare(data, out, plot, image_column, None)
    rows = embed_rows(stream, encoder, preprocess, None, chunk_size, batch_size, progress)
    k = clusters if clusters is not None else max(1, round(math.sqrt(int(rows.readable.sum()) / 10)))
    dups = semdedup(rows.images, rows.readable, threshold, k, seed, progress)
    keep = rows.readable & ~dups.removed
    manifest = _write(stream, out, "deduplicated", keep, chunk_size)
    removed_rows = np.flatnonzero(dups.removed)
    report = {
        "method": "semdedup",
        "data": str(stream.path),
        "model": encoder.name or "model",
        "runtime": encoder.runtime,
        "threshold": threshold,
        "clusters": k,
        "seed": seed,
        "rows_in": len(rows),
        "rows_out": int(keep.sum()),
        "removed": {
            k: v
            for k, v in {"unreadable image": int((~rows.readable).sum()), "near-duplicate": len(removed_rows)}.items()
            if v
        },
        "duplicates": [
            {
                "row": int(r),
                "duplicate_of": int(dups.duplicate_of[r]),
                "cosine": round(float(dups.similarity[r]), 6),
                "cluster": int(dups.cluster[r]),
            }
            for r in removed_rows.tolist()
        ],
        "skipped_examples": rows.skipped.items[:20],
    }
    report_path = out / "dedup.json"
    write_json_atomic(report_path, report)
    plot_path = None
    if plot:
        from .plot import plot_histogram  # optional: matplotlib only when a plot is asked for

        compared = ~np.isnan(dups.similarity)
        plot_path = plot_histogram(
            dups.similarity[compared],
            threshold,
            out / "dedup_similarity.png",
            "cosine to the most similar earlier image of its cluster",
            f"SemDeDup ({len(removed_rows)} of {len(rows)} rows removed)",
        )
    return FilterResult(manifest, report_path, plot_path, report)


def _quantiles(scores: np.ndarray) -> dict[str, float]:
    valid = scores[~np.isnan(scores)]
    if not len(valid):
        return {}
    qs = np.quantile(valid, [0.0, 0.1, 0.5, 0.9, 1.0])
    return {name: round(float(q), 6) for name, q in zip(("min", "p10", "median", "p90", "max"), qs)}
