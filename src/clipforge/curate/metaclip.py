"""MetaCLIP curation (Xu et al., "Demystifying CLIP Data"): match captions to metadata, then balance.

    result = curate_metaclip("pairs.csv", "entries.txt", t=20000, out="curated/")

Two streaming passes over the manifest, each a chunk of rows at a time, so memory holds one chunk and
one count per entry, whatever the manifest's size:

1. count: match each caption against the entries (`clipforge.curate.matching`) and count, per entry,
   the pairs that match it;
2. sample: match again and keep each pair by MetaCLIP's rule (`clipforge.curate.balance`), writing
   the kept rows in input order (`clipforge.curate.manifest`).

Both passes are made of per-chunk functions (`count_chunk`, `sample_chunk`) whose only shared state
is the summed counts, so a distributed engine can run pass 1 per shard, add the counts, and run
pass 2 per shard with each shard's global row offset: the draws depend on (seed, row, entry) only,
so the kept set is the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..files import write_json_atomic
from .balance import check_threshold, count_entries, keep_pairs, keep_probabilities
from .manifest import ManifestStream, ManifestWriter
from .matching import EntryMatcher, read_metadata

MATCHING_RULE = (
    "lower-cased caption padded with spaces, `, . ; : ? ! `` wrapped in spaces, tabs/newlines as spaces; "
    "an entry matches if ' entry ' is a substring (word boundaries)"
)
REPORT_NAME = "metaclip.json"
PLOT_NAME = "entry_counts.png"


@dataclass
class ChunkCounts:
    """What pass 1 learns from some rows: per-entry counts, the number of pairs and of matched pairs."""

    counts: np.ndarray
    pairs: int
    matched: int

    def __add__(self, other: ChunkCounts) -> ChunkCounts:
        return ChunkCounts(self.counts + other.counts, self.pairs + other.pairs, self.matched + other.matched)


def count_chunk(matcher: EntryMatcher, texts: Sequence[Sequence[str]]) -> ChunkCounts:
    """Pass 1 over some pairs (the captions of each): how many pairs match each entry."""
    matches = [matcher.match_texts(t) if t else [] for t in texts]
    return ChunkCounts(count_entries(matches, len(matcher)), len(matches), sum(1 for m in matches if m))


def sample_chunk(
    matcher: EntryMatcher, texts: Sequence[Sequence[str]], first_row: int, probabilities: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pass 2 over rows `first_row ...`: (keep mask, per-entry counts among the kept pairs)."""
    matches = [matcher.match_texts(t) if t else [] for t in texts]
    keep = keep_pairs(matches, first_row, probabilities, seed)
    kept = count_entries([m for m, k in zip(matches, keep) if k], len(matcher))
    return keep, kept


@dataclass
class CurationResult:
    """What a curation step wrote (the kept rows, the JSON report, the PNG plot) and its report."""

    manifest: Path
    report_path: Path
    plot: Path | None
    report: dict[str, Any]

    def summary(self) -> str:
        r = self.report
        return (
            f"curated {r['pairs_in']} -> {r['pairs_out']} pairs ({r['pairs_matched']} matched, "
            f"{r['pairs_unmatched']} unmatched) over {r['entries_matched']} of {r['entries']} entries "
            f"(t={r['t']:g}, {r['entries_over_t']} over t): {self.manifest}"
        )


def curate_metaclip(
    data: str | Path,
    metadata: str | Path | Sequence[str],
    t: float,
    out: str | Path,
    seed: int = 0,
    chunk_size: int = 10000,
    caption_column: str | None = None,
    image_column: str | None = None,
    progress: bool = True,
    plot: bool = True,
) -> CurationResult:
    """Curate the manifest `data` with the metadata entries (a file, one per line, or a list) at threshold `t`.

    Writes `out/curated.<ext>` (the kept rows, input format and columns, input order), `out/metaclip.json`
    (the report) and, with `plot`, `out/entry_counts.png` (entry-count histograms before and after).
    """
    t = check_threshold(t)
    if seed < 0:
        raise ValueError(f"the seed must be a non-negative integer, got {seed}")
    entries = read_metadata(metadata) if isinstance(metadata, (str, Path)) else list(metadata)
    matcher = EntryMatcher(entries)
    stream = ManifestStream(data, caption_column, image_column)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a directory")
    if plot:
        from .plot import check_plotting  # optional: matplotlib only when a plot is asked for

        check_plotting()

    total = ChunkCounts(np.zeros(len(matcher), np.int64), 0, 0)
    with tqdm(desc="curate: count", unit=" pairs", disable=not progress) as bar:
        for chunk in stream.chunks(chunk_size):
            total = total + count_chunk(matcher, chunk.texts)
            bar.update(len(chunk.texts))
    probabilities = keep_probabilities(total.counts, t)

    manifest = out / f"curated{stream.path.suffix.lower()}"
    after = np.zeros(len(matcher), np.int64)
    pairs_out = 0
    with (
        ManifestWriter(stream, manifest) as writer,
        tqdm(total=total.pairs, desc="curate: sample", unit=" pairs", disable=not progress) as bar,
    ):
        for chunk in stream.chunks(chunk_size):
            keep, kept = sample_chunk(matcher, chunk.texts, chunk.first_row, probabilities, seed)
            writer.write(chunk, keep)
            after += kept
            pairs_out += int(keep.sum())
            bar.update(len(chunk.texts))

    report = _report(stream, matcher, total, after, pairs_out, t, seed, metadata)
    report_path = out / REPORT_NAME
    write_json_atomic(report_path, report)
    plot_path = None
    if plot:
        from .plot import plot_entry_counts  # optional: matplotlib only when a plot is asked for

        plot_path = plot_entry_counts(total.counts, after, t, out / PLOT_NAME)
    return CurationResult(manifest, report_path, plot_path, report)


def _report(
    stream: ManifestStream,
    matcher: EntryMatcher,
    total: ChunkCounts,
    after: np.ndarray,
    pairs_out: int,
    t: float,
    seed: int,
    metadata: Any,
) -> dict[str, Any]:
    before = total.counts
    probabilities = keep_probabilities(before, t)
    order = np.argsort(-before, kind="stable")
    return {
        "method": "metaclip",
        "data": str(stream.path),
        "caption_column": stream.caption_column,
        "metadata": str(metadata) if isinstance(metadata, (str, Path)) else None,
        "t": int(t) if t.is_integer() else t,
        "seed": seed,
        "matching": MATCHING_RULE,
        "entries": len(matcher),
        "duplicate_entries": matcher.duplicates,
        "entries_matched": int((before > 0).sum()),
        "entries_unmatched": int((before == 0).sum()),
        "entries_over_t": int((before > t).sum()),
        "pairs_in": total.pairs,
        "pairs_matched": total.matched,
        "pairs_unmatched": total.pairs - total.matched,
        "pairs_out": pairs_out,
        "counts": [
            {
                "entry": matcher.entries[i],
                "before": int(before[i]),
                "after": int(after[i]),
                "p": round(float(probabilities[i]), 6),
            }
            for i in order.tolist()
            if before[i] > 0
        ],
    }
