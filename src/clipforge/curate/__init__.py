"""Data curation: MetaCLIP-style metadata matching and balancing of image–text manifests.

`curate_metaclip` runs the whole method on a manifest; `EntryMatcher`, `count_chunk` and
`sample_chunk` are its per-shard steps (see `clipforge.curate.metaclip`). docs/curation.md explains
the rule.
"""

from .balance import keep_probabilities, uniform_draws
from .matching import EntryMatcher, normalise, read_metadata
from .metaclip import CurationResult, count_chunk, curate_metaclip, sample_chunk

__all__ = [
    "CurationResult",
    "EntryMatcher",
    "count_chunk",
    "curate_metaclip",
    "keep_probabilities",
    "normalise",
    "read_metadata",
    "sample_chunk",
    "uniform_draws",
]
