"""On-disk layout of an index directory; every file is written atomically.

    DIR/index.json                    model, dim, index spec, runs, counts (the manifest)
    DIR/runs/run-0000.parquet         plan of one build/add run: id, shard, path, key, caption, tar member
    DIR/shards/shard-000000.npy       float32 [rows, dim] L2-normalised image embeddings
    DIR/shards/shard-000000.parquet   metadata of those rows: id, path, key, caption, member, offset, size
    DIR/shards/shard-000000.captions.npy   caption embeddings (when captions are embedded)
    DIR/shards/shard-000000.done.json done-marker, written last: rows, skipped items
    DIR/metadata.parquet              all rows in index order (written by the merge step)
    DIR/index.faiss, DIR/captions.faiss

A shard counts as finished only when its done-marker exists and agrees with its files, so a
run that crashed anywhere is resumed by redoing exactly the unfinished shards.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..data.inputs import Item
from ..extras import install_hint
from ..files import atomic_path, save_npy_atomic, write_json_atomic
from ..images import SkipLog

FORMAT_VERSION = 1
META_COLUMNS = ("id", "path", "key", "caption", "member", "offset", "size")


def _pa():
    try:
        import pyarrow as pa  # optional (`index` extra): imported where tables are read or written
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(f"clipforge.index needs pyarrow: {install_hint('pyarrow', 'index')}") from exc
    return pa, pq


def items_table(ids: Sequence[int], items: Sequence[Item], shards: Sequence[int] | None = None):
    """A pyarrow table of items (plan rows or shard metadata)."""
    pa, _ = _pa()
    cols: dict[str, Any] = {
        "id": pa.array(list(ids), pa.int64()),
        "path": pa.array([it.path for it in items], pa.string()),
        "key": pa.array([it.key for it in items], pa.string()),
        "caption": pa.array([it.caption for it in items], pa.string()),
        "member": pa.array([it.member for it in items], pa.string()),
        "offset": pa.array([it.offset for it in items], pa.int64()),
        "size": pa.array([it.size for it in items], pa.int64()),
    }
    if shards is not None:
        cols["shard"] = pa.array(list(shards), pa.int32())
    return pa.table(cols)


def write_table(path: Path, table) -> None:
    _, pq = _pa()
    with atomic_path(path) as tmp:
        pq.write_table(table, str(tmp))


def read_table(path: Path):
    _, pq = _pa()
    return pq.read_table(str(path))


def concat_tables(tables: Sequence[Any]):
    pa, _ = _pa()
    return pa.concat_tables(tables)


def table_items(table) -> tuple[list[int], list[Item]]:
    cols = table.to_pydict()
    items = [
        Item(p, m, int(o), int(s), key=k, caption=c)
        for p, k, c, m, o, s in zip(
            cols["path"], cols["key"], cols["caption"], cols["member"], cols["offset"], cols["size"]
        )
    ]
    return [int(i) for i in cols["id"]], items


@dataclass
class Run:
    """One `build` or `add` invocation: its inputs, its shards and whether it was merged."""

    number: int
    inputs: list[str]
    options: dict[str, Any]
    first_shard: int
    num_shards: int
    first_id: int
    num_items: int
    merged: bool = False
    started: float = field(default_factory=time.time)
    skipped: int = 0  # odd inputs left out while listing (FIFOs, link loops, non-UTF-8 names, ...)
    skipped_items: list[list[str]] = field(default_factory=list)  # the first of them: [name, reason]

    @property
    def shards(self) -> range:
        return range(self.first_shard, self.first_shard + self.num_shards)

    def same_request(self, inputs: Sequence[str], options: dict[str, Any]) -> bool:
        return self.inputs == list(inputs) and self.options == options


class IndexStore:
    """Paths and manifest of one index directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- paths ---------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / "index.json"

    @property
    def metadata_path(self) -> Path:
        return self.root / "metadata.parquet"

    def faiss_path(self, target: str = "image") -> Path:
        return self.root / ("index.faiss" if target == "image" else f"{target}s.faiss")

    def run_plan_path(self, number: int) -> Path:
        return self.root / "runs" / f"run-{number:04d}.parquet"

    def shard_path(self, shard: int, suffix: str) -> Path:
        return self.root / "shards" / f"shard-{shard:06d}{suffix}"

    # -- manifest --------------------------------------------------------------
    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def read(self) -> dict[str, Any]:
        if not self.exists():
            raise FileNotFoundError(f"{self.root}: not an index directory (no index.json); build one first")
        data = json.loads(self.manifest_path.read_text())
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"{self.manifest_path}: unsupported index format {data.get('format')!r}")
        return data

    def write(self, manifest: dict[str, Any]) -> None:
        manifest["updated"] = time.time()
        write_json_atomic(self.manifest_path, manifest)

    @staticmethod
    def runs(manifest: dict[str, Any]) -> list[Run]:
        return [Run(**r) for r in manifest.get("runs", [])]

    @staticmethod
    def set_runs(manifest: dict[str, Any], runs: Sequence[Run]) -> None:
        manifest["runs"] = [asdict(r) for r in runs]

    # -- shards ----------------------------------------------------------------
    def shard_done(self, shard: int, captions: bool = False) -> dict[str, Any] | None:
        """The shard's done-marker if the shard is complete and consistent, else None."""
        marker = self.shard_path(shard, ".done.json")
        if not marker.is_file():
            return None
        try:
            info = json.loads(marker.read_text())
            rows = np.load(self.shard_path(shard, ".npy"), mmap_mode="r").shape[0]
            if rows != info["rows"] or read_table(self.shard_path(shard, ".parquet")).num_rows != rows:
                return None
            if captions and np.load(self.shard_path(shard, ".captions.npy"), mmap_mode="r").shape[0] != rows:
                return None
        except (OSError, ValueError, KeyError):
            return None
        return info

    def write_shard(
        self,
        shard: int,
        features: np.ndarray,
        ids: Sequence[int],
        items: Sequence[Item],
        caption_features: np.ndarray | None,
        skipped: SkipLog,
    ) -> None:
        """Write a shard's files, then its done-marker (each atomically, marker last)."""
        self.shard_path(shard, "").parent.mkdir(parents=True, exist_ok=True)
        save_npy_atomic(self.shard_path(shard, ".npy"), np.ascontiguousarray(features, dtype=np.float32))
        write_table(self.shard_path(shard, ".parquet"), items_table(ids, items))
        if caption_features is not None:
            save_npy_atomic(
                self.shard_path(shard, ".captions.npy"), np.ascontiguousarray(caption_features, dtype=np.float32)
            )
        write_json_atomic(
            self.shard_path(shard, ".done.json"),
            {
                "shard": shard,
                "rows": int(len(features)),
                "skipped": skipped.count,
                "skipped_items": skipped.items[:100],
            },
        )

    def load_shard(self, shard: int, suffix: str = ".npy", mmap: bool = True) -> np.ndarray:
        return np.load(self.shard_path(shard, suffix), mmap_mode="r" if mmap else None)


def check_model_weights(root: str | Path, recorded: dict[str, Any], model: Any) -> None:
    """Refuse a model whose weights differ from those the index was built with (`recorded["weights"]`,
    written since indexes record a fingerprint): its vectors would not be comparable."""
    want = recorded.get("weights")
    if want and model.fingerprint() != want:
        raise ValueError(
            f"{root}: the model's weights differ from those the index was built with "
            f"(fingerprint {model.fingerprint()} != {want}); pass the checkpoint it was built with as --model"
        )
