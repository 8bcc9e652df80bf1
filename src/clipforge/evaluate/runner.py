"""`evaluate(...)`: load a model, resolve datasets, run tasks, write result files. The CLI calls this."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..adapt import Backbone, load_adapted
from ..adapt.surface import AdaptedModel, check_runtime
from ..api import load, resolve_model_path
from ..config import Activation
from ..extras import MissingExtra, install_hint, missing, require
from ..registry import EVAL_TASKS
from ..runtime import Backend, Encoder, Precision
from . import builtin  # noqa: F401  (registers shapes and digits)
from .config import EvalConfig
from .datasets import DatasetSource, EvalDataset
from .results import save_result
from .sources import resolve_dataset
from .tasks import PROBE_PACKAGES, EvalResult, Evaluator


def default_cache_dir(part: str = "features") -> Path:
    """$CLIPFORGE_CACHE/PART, else ~/.cache/clipforge/PART (features; `demo` for `clipforge demo`'s output)."""
    root = os.environ.get("CLIPFORGE_CACHE")
    return Path(root) / part if root else Path.home() / ".cache" / "clipforge" / part


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
        return EVAL_TASKS.list(), True
    unknown = [t for t in items if t not in EVAL_TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; choose from {', '.join(EVAL_TASKS.list())} or all")
    return list(dict.fromkeys(items)), False


#: (encoder, preprocess, tokenizer): what an `Evaluator` runs
Loaded = tuple[Encoder, Callable, Callable]


def _load_model(
    model: Any,
    device: str | None,
    precision: Precision,
    backend: Backend | None,
    config: Any,
    activation: Activation | None,
) -> tuple[Loaded, dict[str, Any]]:
    if isinstance(model, tuple):
        m = model[0]
        name = m.name or "model"
        return model, {"path": None, "name": name, "device": str(m.device), "runtime": m.runtime}
    loaded = load(model, device, precision, config, activation, backend)
    net = loaded[0]
    name = net.config.name or (Path(str(model)).name if model is not None else "default")
    path = str(Path(resolve_model_path(model)).resolve()) if model is not None else "embedded default model"
    return loaded, {"path": path, "name": name, "device": str(net.device), "runtime": net.runtime}


def _load_adapted(
    adapter: str | Path, model: Any, device: str | None, precision: str, backend: str | None
) -> tuple[Loaded, AdaptedModel, dict[str, Any]]:
    """(encoder, preprocess, tokenizer), the adapter as a fixed head, and what to record about them."""
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
    settings: EvalConfig | None = None,
    **options: Any,
) -> list[RunOutput]:
    """Run `tasks` on every dataset with one model; write one JSON (+ PNGs) per task into `out_dir`.

    `model` is a checkpoint path (None = the embedded default model) or a ready
    `(model, preprocess, tokenizer)` tuple. `tasks="all"` runs every task a dataset supports and
    reports the others as skipped; naming a task that does not fit raises ValueError.
    `settings` is an `EvalConfig`; keyword `options` override its fields (`config=` is the
    architecture override, as in `clipforge.load`). With `adapter`, a fitted adapter's classifier
    replaces the prompt ensemble (tasks registered `with_adapter` only; `model`, if given, is its
    backbone, else the checkpoint the adapter records).
    """
    if "config" in options:
        options["model_config"] = options.pop("config")
    cfg = (settings or EvalConfig()).replace(**options)
    names, is_all = parse_tasks(tasks)
    if cfg.adapter is not None:
        fits = [t for t in EVAL_TASKS.list() if EVAL_TASKS.get(t).with_adapter]
        if is_all:
            names = fits
        other = [t for t in names if t not in fits]
        if other:
            raise ValueError(f"an adapter classifies with its own head: tasks {other} do not apply (use {fits})")
    _require_packages(names, cfg.plots and out_dir is not None, cfg.probe_robustness)
    specs = [datasets] if isinstance(datasets, (str, Path, DatasetSource)) else list(datasets)
    sources = [resolve_dataset(s) for s in specs]
    plans = [_plan(source, names, is_all, cfg.split, cfg.max_samples) for source in sources]  # fail before any work
    head = None
    if cfg.adapter is not None:
        loaded, head, info = _load_adapted(cfg.adapter, model, cfg.device, cfg.precision, cfg.backend)
    else:
        loaded, info = _load_model(model, cfg.device, cfg.precision, cfg.backend, cfg.model_config, cfg.activation)
    cache = default_cache_dir() if cfg.cache_dir == "default" else cfg.cache_dir
    ev = Evaluator(
        *loaded, cache, cfg.batch_size, cfg.num_workers, cfg.progress, cfg.query_chunk, cfg.gallery_chunk, info, head
    )
    outputs: list[RunOutput] = []
    for source, (test_set, plan) in zip(sources, plans):
        for task, reason in plan:
            if reason is not None:
                outputs.append(RunOutput(task, source.name, skipped=reason))
                continue
            result = EVAL_TASKS.get(task).run(ev, source, test_set, cfg)
            path = save_result(result, out_dir, cfg.plots) if out_dir is not None else None
            outputs.append(RunOutput(task, source.name, result, path))
    return outputs


def _require_packages(tasks: Sequence[str], plots: bool, probe_robustness: bool) -> None:
    """Fail before any work when the plots or the robustness probes need a missing optional package
    (tasks' own `requires` are checked per task by `_plan`)."""
    if plots:
        try:
            require(["matplotlib"], "eval")
        except MissingExtra as exc:
            raise MissingExtra(f"{exc}, or pass --no-plots") from None
    if probe_robustness and "robustness" in tasks:
        require(PROBE_PACKAGES, "eval")


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
        spec = EVAL_TASKS.get(task)
        absent = missing(spec.requires)
        reason = (
            install_hint(absent[0], "eval")
            if absent
            else spec.why_not(source, test_set) or spec.empty_split(source, test_set, split, max_samples)
        )
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
