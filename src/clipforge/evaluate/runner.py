"""`evaluate(...)`: load a model, resolve datasets, run tasks, write result files. The CLI calls this."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..api import load
from . import builtin  # noqa: F401  (registers shapes and digits)
from .datasets import DatasetSource, EvalDataset
from .ranking import DEFAULT_GALLERY_CHUNK, DEFAULT_QUERY_CHUNK
from .results import save_result
from .sources import resolve_dataset
from .tasks import DEFAULT_SEEDS, DEFAULT_SHOTS, TASKS, EvalResult, Evaluator


def default_cache_dir() -> Path:
    """$CLIPFORGE_CACHE/features, else ~/.cache/clipforge/features."""
    root = os.environ.get("CLIPFORGE_CACHE")
    return Path(root) / "features" if root else Path.home() / ".cache" / "clipforge" / "features"


@dataclass
class RunOutput:
    """A finished task (with the JSON written, if any) or a task skipped for a reason."""

    task: str
    dataset: str
    result: EvalResult | None = None
    path: Path | None = None
    skipped: str | None = None


def parse_tasks(tasks: str | Sequence[str]) -> tuple[list[str], bool]:
    """Task names (commas allowed; `all` = every task that fits each dataset) and whether `all` was asked."""
    items = [t.strip() for t in ([tasks] if isinstance(tasks, str) else tasks) for t in t.split(",") if t.strip()]
    if not items:
        raise ValueError("no task given")
    if "all" in items:
        return list(TASKS), True
    unknown = [t for t in items if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; choose from {', '.join(TASKS)} or all")
    return list(dict.fromkeys(items)), False


def _why_not(task: str, source: DatasetSource, has_captions: Callable[[], bool]) -> str | None:
    """Why `task` cannot run on `source` (None if it can)."""
    if task in ("zeroshot", "linear-probe", "few-shot", "robustness") and source.classnames is None:
        return "the dataset has no class labels"
    if task == "robustness" and not source.robustness_variants():
        return "the dataset has no distribution-shift variants"
    if task == "retrieval" and not has_captions():
        return "the dataset has no captions"
    return None


def _load_model(
    model: Any, device: str | None, precision: str, backend: str | None, config: Any, activation: str | None
):
    if isinstance(model, tuple):
        m = model[0]
        name = getattr(m.config, "name", "") or "model"
        return model, {"path": None, "name": name, "device": str(m.device), "runtime": m.runtime}
    loaded = load(model, device, precision, config, activation, backend)  # type: ignore[arg-type]
    net = loaded[0]
    name = net.config.name or (Path(str(model)).name if model is not None else "default")
    path = str(Path(model).resolve()) if model is not None else "embedded default model"
    return loaded, {"path": path, "name": name, "device": str(net.device), "runtime": net.runtime}


ADAPTER_TASKS = ("zeroshot", "robustness")


def _load_adapted(adapter: str | Path, model: Any, device: str | None, precision: str, backend: str | None):
    """(encoder, preprocess, tokenizer), the adapter as a fixed head, and what to record about them."""
    from ..adapt import Backbone, load_adapted
    from ..adapt.surface import check_runtime

    check_runtime(precision, backend)
    if isinstance(model, tuple):
        model = Backbone(*model)
    adapted = load_adapted(adapter, model, device=device or "cpu")
    bb = adapted.adapter.backbone
    info = {
        "path": bb.source,
        "name": adapted.encoder.name,
        "adapter": str(Path(adapter).resolve()),
        "adapter_method": adapted.adapter.method,
        "device": str(bb.device),
        "runtime": bb.model.runtime,
    }
    return (adapted.encoder, adapted.preprocess, adapted.tokenizer), adapted, info


def evaluate(
    tasks: str | Sequence[str],
    datasets: str | DatasetSource | Sequence[str | DatasetSource],
    model: str | Path | tuple | None = None,
    out_dir: str | Path | None = "eval-results",
    *,
    split: str | None = None,
    templates: str | Sequence[str] | None = None,
    batch_size: int = 64,
    max_samples: int | None = None,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    shots: Sequence[int] = DEFAULT_SHOTS,
    probe_robustness: bool = False,
    cache_dir: str | Path | None = "default",
    device: str | None = None,
    precision: str = "fp32",
    config: Any = None,
    activation: str | None = None,
    plots: bool = True,
    progress: bool = True,
    num_workers: int | None = None,
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    gallery_chunk: int = DEFAULT_GALLERY_CHUNK,
    backend: str | None = None,
    adapter: str | Path | None = None,
) -> list[RunOutput]:
    """Run `tasks` on every dataset with one model; write one JSON (+ PNGs) per task into `out_dir`.

    `model` is a checkpoint path (None = the embedded default model) or a ready
    `(model, preprocess, tokenizer)` tuple. `tasks="all"` runs every task a dataset supports and
    reports the others as skipped; naming a task that does not fit raises ValueError.
    `cache_dir=None` disables the feature cache ("default": see `default_cache_dir`).
    `precision`/`backend` choose the inference engine (see `clipforge.load`). `adapter`: a fitted
    adapter directory whose classifier replaces the prompt ensemble (zeroshot and robustness only;
    `model`, if given, is its backbone, else the checkpoint the adapter records).
    """
    names, is_all = parse_tasks(tasks)
    if adapter is not None:
        if is_all:
            names = list(ADAPTER_TASKS)
        other = [t for t in names if t not in ADAPTER_TASKS]
        if other:
            raise ValueError(
                f"an adapter classifies with its own head: tasks {other} do not apply (use {ADAPTER_TASKS})"
            )
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be positive, got {max_samples}")
    if any(k < 1 for k in shots) or not shots:
        raise ValueError(f"shots must be positive integers, got {list(shots)}")
    if not seeds:
        raise ValueError("give at least one seed")
    specs = [datasets] if isinstance(datasets, (str, Path, DatasetSource)) else list(datasets)
    sources = [resolve_dataset(s) for s in specs]
    plans = [_plan(source, names, is_all, split, max_samples) for source in sources]  # fail before any work
    head = None
    if adapter is not None:
        (net, preprocess, tokenizer), head, info = _load_adapted(adapter, model, device, precision, backend)
    else:
        (net, preprocess, tokenizer), info = _load_model(model, device, precision, backend, config, activation)
    cache = default_cache_dir() if cache_dir == "default" else cache_dir
    ev = Evaluator(
        net, preprocess, tokenizer, cache, batch_size, num_workers, progress, query_chunk, gallery_chunk, info, head
    )
    outputs: list[RunOutput] = []
    for source, (test_set, plan) in zip(sources, plans):
        for task, reason in plan:
            if reason is not None:
                outputs.append(RunOutput(task, source.name, skipped=reason))
                continue
            if task == "zeroshot":
                result = ev.zeroshot(test_set(), templates)
            elif task == "retrieval":
                result = ev.retrieval(test_set())
            elif task == "linear-probe":
                result = ev.linear_probe(source, split, max_samples)
            elif task == "few-shot":
                result = ev.few_shot(source, shots, seeds, templates, split, max_samples)
            else:
                result = ev.robustness(source, templates, max_samples, probe_robustness)
            path = save_result(result, out_dir, plots) if out_dir is not None else None
            outputs.append(RunOutput(task, source.name, result, path))
    return outputs


def _plan(
    source: DatasetSource, tasks: Sequence[str], is_all: bool, split: str | None, max_samples: int | None
) -> tuple[Callable[[], EvalDataset], list[tuple[str, str | None]]]:
    """(lazy loader of the evaluation split, [(task, reason it is skipped or None)]); raises for a named
    task that cannot run."""
    loaded: dict[str, EvalDataset] = {}

    def test_set() -> EvalDataset:
        if "test" not in loaded:
            # A split named in the dataset spec (shapes:TASK:SPLIT) is more specific than --split.
            chosen = getattr(source, "fixed_split", None) or split or source.default_split()
            loaded["test"] = source.load(chosen, source.default_shift(), max_samples)
        return loaded["test"]

    plan = []
    for task in tasks:
        reason = _why_not(task, source, lambda: test_set().has_captions)
        if reason is not None and not is_all:
            raise ValueError(f"cannot run {task} on {source.name!r}: {reason}")
        plan.append((task, reason))
    return test_set, plan


def format_summary(outputs: Sequence[RunOutput]) -> str:
    """A short human summary: headline numbers per (dataset, task), skipped tasks, files written."""
    lines = []
    for o in outputs:
        if o.result is None:
            lines.append(f"{o.dataset:<22} {o.task:<13} skipped: {o.skipped}")
            continue
        shown = []
        for k, v in list(o.result.summary.items())[:8]:
            shown.append(f"{k}={'n/a' if v is None else (f'{v:.4g}' if isinstance(v, float) else v)}")
        lines.append(f"{o.dataset:<22} {o.task:<13} " + "  ".join(shown) + f"  ({o.result.wall_time_s:.1f}s)")
        for note in o.result.notes:
            lines.append(f"{'':<36} note: {note.splitlines()[0]}")
        if o.path is not None:
            lines.append(f"{'':<36} → {o.path}")
    return "\n".join(lines)
