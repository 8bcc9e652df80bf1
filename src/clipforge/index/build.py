"""`build_index` / `add_to_index`: plan → embed shards (any number of ranks) → merge into a faiss index.

1. Plan (rank 0): resolve the inputs into items, give them ids, cut them into shards of
   `shard_size` rows, write the plan and the manifest. Re-running the same request resumes it.
2. Embed (every rank): rank r embeds the unfinished shards s with s % world_size == r; each shard is
   written atomically and marked done last, so a crash loses at most the shards in flight.
3. Merge (rank 0): concatenate shard metadata, build the faiss index (or extend the existing one
   when its kind still fits the corpus size), record everything in `index.json`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..api import load, resolve_model_path
from ..data.inputs import Item, resolve_items
from ..fast import FastCLIP
from ..files import atomic_path
from ..images import SkipLog
from ..model import CLIP
from ..runtime import as_backend, as_precision
from ..tokenizer import Tokenizer
from ..transforms import ImageTransform
from . import ann
from .distributed import DistContext, context_from_env
from .embedder import embed_items
from .store import (
    FORMAT_VERSION,
    IndexStore,
    Run,
    check_model_weights,
    concat_tables,
    items_table,
    read_table,
    table_items,
    write_table,
)


@dataclass
class BuildOptions:
    """How to embed and index; the first group defines a run's identity (checked on resume)."""

    shard_size: int = 10_000
    captions: bool = False  # also embed captions (text-to-caption search)
    image_column: str | None = None
    caption_column: str | None = None
    index_type: str = "auto"
    batch_size: int = 64
    num_workers: int | None = None
    device: str | None = None
    precision: str = "fp32"
    backend: str | None = None  # inference engine (see clipforge.load); None = the plain model
    progress: bool = True
    config: str | None = None  # architecture override of a build's model (recorded in index.json)
    activation: str | None = None  # activation of a bare state dict (recorded in index.json)

    def request(self) -> dict[str, Any]:
        return {"captions": self.captions, "image_column": self.image_column, "caption_column": self.caption_column}

    def validate(self) -> None:
        if self.shard_size < 1:
            raise ValueError("shard_size must be at least 1")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.index_type != "auto" and self.index_type not in ann.INDEX_KINDS:
            raise ValueError(f"index type {self.index_type!r}: expected auto or one of {', '.join(ann.INDEX_KINDS)}")


@dataclass
class BuildReport:
    """What a build/add call did (on rank 0; other ranks report their own shard work)."""

    directory: str
    total: int
    added: int
    skipped: int
    shards_embedded: int
    shards_reused: int
    index: dict[str, Any]
    seconds: float
    up_to_date: bool = False
    skipped_items: list[list[str]] = field(default_factory=list)  # [name, reason] of the first skipped inputs


def build_index(
    inputs: Sequence[str], directory: str | Path, model: str | Path | None = None, options: BuildOptions | None = None
) -> BuildReport:
    """Embed `inputs` into a new index at `directory` (or resume an interrupted build of the same inputs)."""
    return _execute(IndexStore(directory), "build", list(inputs), model, options or BuildOptions())


def add_to_index(directory: str | Path, inputs: Sequence[str], options: BuildOptions | None = None) -> BuildReport:
    """Embed more items into an existing index with its model (resumable like a build)."""
    return _execute(IndexStore(directory), "add", list(inputs), None, options or BuildOptions())


def _execute(store: IndexStore, mode: str, inputs: list[str], model: str | Path | None, opts: BuildOptions):
    opts.validate()
    start = time.perf_counter()
    ctx = context_from_env()
    models = _Models(opts, ctx)
    try:
        run = _collective(ctx, lambda: _plan(store, mode, inputs, model, opts, models) if ctx.is_main else None)
        manifest = store.read()
        run = run if ctx.is_main else _pending_run(manifest)
        embedded = reused = 0
        if run is not None:
            embedded, reused = _collective(ctx, lambda: _embed_run(store, manifest, run, opts, ctx, models))
            embedded, reused = ctx.total(embedded), ctx.total(reused)
        report = _collective(ctx, lambda: _merge(store, opts) if ctx.is_main and run is not None else None)
    finally:
        ctx.close()
    manifest = store.read()
    return BuildReport(
        directory=str(store.root),
        total=int(manifest["count"]),
        added=int(report["added"]) if report else 0,
        skipped=int(report["skipped"]) if report else 0,
        skipped_items=report["skipped_items"] if report else [],
        shards_embedded=embedded,
        shards_reused=reused,
        index=manifest.get("index", {}),
        seconds=time.perf_counter() - start,
        up_to_date=run is None,
    )


def _collective(ctx: DistContext, step):
    """Run `step`, then make every rank fail if any rank failed (so none waits forever)."""
    try:
        result = step()
    except BaseException:
        ctx.agree(False)
        raise
    if not ctx.agree(True):
        raise RuntimeError(f"rank {ctx.rank}: another rank failed; re-run the same command to resume")
    return result


_SKIPPED_KEPT = 100  # skipped inputs listed by name per run (all are counted)


# -- 1. plan -----------------------------------------------------------------------------------


class _Models:
    """Loads the embedding model at most once per process (planning needs its dim, embedding the model)."""

    def __init__(self, opts: BuildOptions, ctx: DistContext) -> None:
        self.opts, self.ctx = opts, ctx
        self._loaded: dict[tuple, tuple[CLIP | FastCLIP, ImageTransform, Tokenizer]] = {}

    def get(self, record: dict[str, Any]) -> tuple[CLIP | FastCLIP, ImageTransform, Tokenizer]:
        """The model a `record` (as index.json stores it) names, loaded once."""
        key = (record["path"], record.get("config"), record.get("activation"))
        if key not in self._loaded:
            device = self.opts.device
            if device is None:
                device = f"cuda:{self.ctx.local_rank}" if torch.cuda.is_available() else "cpu"
            self._loaded[key] = load(
                record["path"],
                device=device,
                precision=as_precision(self.opts.precision),
                backend=as_backend(self.opts.backend),
                config=record.get("config"),
                activation=record.get("activation"),
            )
        return self._loaded[key]

    def record(self, model: str | Path | None) -> dict[str, Any]:
        """What index.json stores about the model (path None = the embedded default model), with the
        build's architecture options, so `index add`, `search` and `serve` load the same model."""
        path = str(Path(resolve_model_path(model)).resolve()) if model is not None else None
        config = self.opts.config
        if config is not None and Path(config).is_file():
            config = str(Path(config).resolve())
        record = {"path": path, "config": config, "activation": self.opts.activation}
        record = {k: v for k, v in record.items() if v is not None or k == "path"}
        encoder = self.get(record)[0]
        return {**record, "embed_dim": int(encoder.config.embed_dim), "weights": encoder.fingerprint()}


def _pending_run(manifest: dict[str, Any]) -> Run | None:
    pending = [r for r in IndexStore.runs(manifest) if not r.merged]
    return pending[0] if pending else None


def _plan(store: IndexStore, mode: str, inputs: list[str], model, opts: BuildOptions, models: _Models) -> Run | None:
    """The run to execute (new or resumed), or None when a build of the same inputs is complete."""
    request = opts.request()
    if store.exists():
        manifest = store.read()
        runs = IndexStore.runs(manifest)
        pending = _pending_run(manifest)
        if mode == "build":
            if not runs or not runs[0].same_request(inputs, request):
                raise ValueError(
                    f"{store.root} already holds an index of other inputs ({runs[0].inputs if runs else '?'}); "
                    "use `clipforge index add` or a new directory"
                )
            if pending is None:
                return None
            if pending.number != 0:
                raise ValueError(f"{store.root}: an `index add` of {pending.inputs} is unfinished; re-run it first")
            return pending
        if pending is not None:
            if pending.same_request(inputs, request):
                return pending
            raise ValueError(f"{store.root}: an earlier run of {pending.inputs} is unfinished; re-run it first")
        if opts.captions != bool(manifest.get("captions")):
            raise ValueError(f"{store.root}: captions={manifest.get('captions')} for this index; keep it the same")
    else:
        if mode == "add":
            store.read()  # raises the clear "not an index directory" error
        record = models.record(model)
        manifest = {
            "format": FORMAT_VERSION,
            "model": record,
            "dim": record["embed_dim"],
            "normalized": True,
            "metric": "inner_product",
            "captions": opts.captions,
            "shard_size": opts.shard_size,
            "index_type": opts.index_type,
            "count": 0,
            "next_id": 0,
            "next_shard": 0,
            "indexed_shards": 0,
            "skipped": 0,
            "created": time.time(),
            "runs": [],
        }
    listing = SkipLog(max_items=_SKIPPED_KEPT)
    items = resolve_items(inputs, opts.image_column, opts.caption_column, skipped=listing)
    if not items:
        detail = f"; {listing.summary()}" if listing.count else ""
        raise ValueError(f"no images found in {inputs}{detail}")
    runs = IndexStore.runs(manifest)
    if runs:  # `add`: skip what earlier runs planned already (a re-added folder adds only its new files)
        known: set[tuple[str, str | None]] = set()
        for r in runs:
            plan = read_table(store.run_plan_path(r.number)).select(["path", "member"]).to_pydict()
            known.update(zip(plan["path"], plan["member"]))
        items = [it for it in items if (it.path, it.member) not in known]
        if not items:
            return None
    size = int(manifest["shard_size"])
    run = Run(
        number=len(runs),
        inputs=inputs,
        options=request,
        first_shard=int(manifest["next_shard"]),
        num_shards=(len(items) + size - 1) // size,
        first_id=int(manifest["next_id"]),
        num_items=len(items),
        skipped=listing.count,
        skipped_items=[list(pair) for pair in listing.items],
    )
    ids = range(run.first_id, run.first_id + len(items))
    shards = [run.first_shard + i // size for i in range(len(items))]
    store.root.mkdir(parents=True, exist_ok=True)
    write_table(store.run_plan_path(run.number), items_table(ids, items, shards))
    manifest["next_id"] = run.first_id + len(items)
    manifest["next_shard"] = run.first_shard + run.num_shards
    IndexStore.set_runs(manifest, [*runs, run])
    store.write(manifest)
    return run


# -- 2. embed ----------------------------------------------------------------------------------


def _embed_run(
    store: IndexStore, manifest: dict[str, Any], run: Run, opts: BuildOptions, ctx: DistContext, models: _Models
):
    captions = bool(manifest.get("captions"))
    mine = [s for s in run.shards if s % ctx.world_size == ctx.rank]
    todo = [s for s in mine if store.shard_done(s, captions) is None]
    if not todo:
        return 0, len(mine)
    plan = read_table(store.run_plan_path(run.number))
    shard_col = plan.column("shard").to_numpy()
    model, preprocess, tokenizer = models.get(manifest["model"])
    check_model_weights(store.root, manifest["model"], model)
    if model.config.embed_dim != manifest["dim"]:
        raise ValueError(f"the model embeds to {model.config.embed_dim} dims but the index holds {manifest['dim']}")

    total = int(np.isin(shard_col, todo).sum())
    desc = "embedding" if ctx.world_size == 1 else f"embedding (rank {ctx.rank}/{ctx.world_size})"
    with tqdm(total=total, desc=desc, unit="img", position=ctx.rank, disable=not opts.progress) as bar:
        for shard in todo:
            ids, items = table_items(plan.filter(shard_col == shard))
            embed_shard(store, shard, ids, items, model, preprocess, tokenizer, opts, captions, bar.update)
    return len(todo), len(mine) - len(todo)


def embed_shard(
    store: IndexStore,
    shard: int,
    ids: Sequence[int],
    items: Sequence[Item],
    model,
    preprocess,
    tokenizer,
    opts: BuildOptions,
    captions: bool,
    on_progress=None,
) -> None:
    """Embed one shard's items and write the shard (files first, done-marker last)."""
    workers = opts.num_workers
    if workers is None:
        spare = (os.cpu_count() or 1) // max(1, int(os.environ.get("WORLD_SIZE", "1"))) - 1
        workers = 0 if len(items) <= 2 * opts.batch_size else max(0, min(2, spare))
    res = embed_items(model, preprocess, tokenizer, items, opts.batch_size, workers, captions, on_progress)
    store.write_shard(
        shard, res.features, [ids[i] for i in res.kept], [items[i] for i in res.kept], res.caption_features, res.skipped
    )


# -- 3. merge ----------------------------------------------------------------------------------


def _merge(store: IndexStore, opts: BuildOptions) -> dict[str, Any]:
    manifest = store.read()
    runs = IndexStore.runs(manifest)
    captions = bool(manifest.get("captions"))
    shards = list(range(int(manifest["next_shard"])))
    markers = {s: store.shard_done(s, captions) for s in shards}
    missing = [s for s, m in markers.items() if m is None]
    if missing:
        raise RuntimeError(f"{store.root}: shards {missing[:10]} are unfinished; re-run the same command to resume")
    done = {s: m for s, m in markers.items() if m is not None}
    rows = [int(done[s]["rows"]) for s in shards]
    total = sum(rows)
    if total == 0:
        raise ValueError(f"{store.root}: no image could be read (see the skipped items in shards/*.done.json)")
    tables = [read_table(store.shard_path(s, ".parquet")) for s in shards]
    write_table(store.metadata_path, concat_tables(tables))
    kind = opts.index_type if opts.index_type != "auto" else manifest.get("index_type", "auto")
    spec = _write_faiss(store, manifest, shards, rows, ".npy", "image", kind)
    if captions:
        _write_faiss(store, manifest, shards, rows, ".captions.npy", "caption", spec.kind)
    added = total - int(manifest["count"])
    new_runs = [r for r in runs if not r.merged]
    new_skipped = sum(r.skipped + sum(int(done[s]["skipped"]) for s in r.shards) for r in new_runs)
    skipped_items = [item for r in new_runs for item in r.skipped_items]
    skipped_items += [list(item) for r in new_runs for s in r.shards for item in done[s].get("skipped_items", [])]
    manifest.update(
        count=total,
        index=spec.to_dict(),
        indexed_shards=len(shards),
        indexed_rows=total,
        skipped=sum(int(done[s]["skipped"]) for s in shards) + sum(r.skipped for r in runs),
    )
    for run in runs:
        run.merged = True
    IndexStore.set_runs(manifest, runs)
    store.write(manifest)
    return {"added": added, "skipped": new_skipped, "skipped_items": skipped_items[:_SKIPPED_KEPT]}


def _write_faiss(
    store: IndexStore, manifest: dict[str, Any], shards: list[int], rows: list[int], suffix: str, target: str, kind: str
) -> ann.IndexSpec:
    """Extend the existing faiss index with the new shards if its kind still fits, else rebuild."""
    total, dim = sum(rows), int(manifest["dim"])
    wanted = ann.choose_index(total, dim, kind)
    path = store.faiss_path(target)
    old = ann.IndexSpec.from_dict(manifest["index"]) if manifest.get("index") else None
    done = int(manifest.get("indexed_shards", 0))
    if old is not None and old.kind == wanted.kind and path.is_file() and done <= len(shards):
        index = ann.read_index(str(path))
        if index.ntotal == sum(rows[:done]):
            for s in shards[done:]:
                index.add(np.ascontiguousarray(store.load_shard(s, suffix), dtype=np.float32))
            ann.configure(index, old)
            _save_faiss(index, path)
            return old
    train = None
    if ann.train_size(wanted):
        train = _gather_rows(store, shards, rows, suffix, ann.sample_rows(total, ann.train_size(wanted)))
    chunks = (store.load_shard(s, suffix) for s in shards)
    index = ann.build_faiss(wanted, dim, chunks, train)
    _save_faiss(index, path)
    return wanted


def _save_faiss(index, path: Path) -> None:

    with atomic_path(path) as tmp:
        ann.write_index(index, str(tmp))


def _gather_rows(store: IndexStore, shards: list[int], rows: list[int], suffix: str, wanted: np.ndarray):
    """Rows `wanted` (sorted global row numbers) of the concatenated shards."""
    starts = np.concatenate([[0], np.cumsum(rows)])
    out = []
    for i, s in enumerate(shards):
        lo, hi = np.searchsorted(wanted, [starts[i], starts[i + 1]])
        if hi > lo:
            out.append(np.asarray(store.load_shard(s, suffix)[wanted[lo:hi] - starts[i]], dtype=np.float32))
    return np.concatenate(out)


def summarize(report: BuildReport) -> str:
    """A one-paragraph human summary of a build."""
    idx = report.index
    params = ", ".join(f"{k}={v}" for k, v in idx.items() if k not in ("kind", "metric"))
    state = "up to date" if report.up_to_date else f"added {report.added}"
    text = (
        f"{report.directory}: {report.total} items ({state}, skipped {report.skipped}); "
        f"shards embedded {report.shards_embedded}, reused {report.shards_reused}; "
        f"index {idx.get('kind')}{' (' + params + ')' if params else ''}; {report.seconds:.1f}s"
    )
    shown = report.skipped_items[:5]
    more = report.skipped - len(shown)
    lines = [f"  skipped {name}: {reason}" for name, reason in shown] + ([f"  ... and {more} more"] if more > 0 else [])
    return "\n".join([text, *lines])


__all__ = ["BuildOptions", "BuildReport", "add_to_index", "build_index", "embed_shard", "summarize"]
