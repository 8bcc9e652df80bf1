"""Result files: one JSON per (model, dataset, task) with its plots, and reports merging many of them."""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import platform
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from .. import __version__
from ..registry import EVAL_TASKS
from . import plots
from .metrics import effective_robustness
from .tasks import EvalResult

SCHEMA = "clipforge.eval/1"
LEAD_COLUMNS = ("model", "model_hash", "dataset", "split", "shift", "task")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-") or "x"


def result_stem(result: EvalResult) -> str:
    """`MODEL-HASH8__DATASET-SPLIT[-SHIFT]__TASK`, unique per (model, dataset, task)."""
    m = result.model
    model = _slug(m.get("name") or Path(str(m.get("path") or "model")).name)
    d = result.dataset
    data = _slug("-".join(str(x) for x in (d.get("name"), d.get("split"), d.get("shift")) if x))
    return f"{model}-{str(m.get('hash', ''))[:8]}__{data}__{result.task}"


def _clean(value: Any) -> Any:
    """JSON-safe: numpy to Python, NaN/inf to null, paths to strings."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        return _clean(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def to_json(result: EvalResult, plot_files: Sequence[str] = ()) -> dict[str, Any]:
    """The record written to disk: metrics plus everything needed to reproduce them."""

    return _clean(
        {
            "schema": SCHEMA,
            "task": result.task,
            "model": result.model,
            "dataset": result.dataset,
            "parameters": result.parameters,
            "summary": result.summary,
            "metrics": result.metrics,
            "notes": result.notes,
            "plots": list(plot_files),
            "clipforge_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "wall_time_s": result.wall_time_s,
            "environment": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        }
    )


def _dumps(record: dict[str, Any]) -> str:
    """Indented JSON with arrays of plain numbers kept on one line (confusion rows stay readable)."""
    text = json.dumps(record, indent=2, ensure_ascii=False)
    flat = re.compile(r"\[\s+([-+0-9.eE,\s]+?)\s+\]")
    return flat.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)


def make_plots(result: EvalResult, out_dir: Path, stem: str) -> list[Path]:
    """The PNGs a task has: confusion (+ reliability), few-shot curve, retrieval grid, robustness bars."""
    a, title = result.artifacts, f"{result.model.get('name') or 'model'} · {result.dataset.get('name')}"
    files: list[Path] = []
    if "confusion" in a:
        files.append(
            plots.plot_confusion(
                a["confusion"], a["classnames"], out_dir / f"{stem}.confusion.png", f"{title} · {result.task} confusion"
            )
        )
    if "calibration" in a:
        files.append(plots.plot_reliability(a["calibration"], out_dir / f"{stem}.reliability.png", title))
    if result.task == "few-shot":
        files.append(
            plots.plot_few_shot(
                a["curve"], a["zeroshot"], out_dir / f"{stem}.curve.png", f"{title} · few-shot", a.get("chance")
            )
        )
    if result.task == "retrieval" and a.get("examples"):
        files.append(
            plots.plot_retrieval_grid(
                a["examples"], a["dataset"], out_dir / f"{stem}.grid.png", f"{title} · text → image (green = correct)"
            )
        )
    if a.get("segmentation_examples"):
        files.append(
            plots.plot_segmentation(
                a["segmentation_examples"], a["classnames"], out_dir / f"{stem}.masks.png", f"{title} · segmentation"
            )
        )
    if result.task == "robustness":
        files.append(plots.plot_robustness(a["table"], out_dir / f"{stem}.robustness.png", f"{title} · robustness"))
    return files


def save_result(result: EvalResult, out_dir: str | Path, plot: bool = True) -> Path:
    """Write `<stem>.json` (and its PNGs) into `out_dir`; returns the JSON path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = result_stem(result)
    files = make_plots(result, out, stem) if plot else []
    path = out / f"{stem}.json"
    path.write_text(_dumps(to_json(result, [f.name for f in files])) + "\n", encoding="utf-8")
    return path


# -- reports ----------------------------------------------------------------------------------


def load_results(inputs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Result records from files and folders (searched recursively for clipforge result JSONs)."""
    records: list[dict[str, Any]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = sorted(p.rglob("*.json"))
        elif p.is_file():
            files = [p]
        else:
            raise FileNotFoundError(f"no such result file or folder: {str(p)!r}")
        for f in files:
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                if p.is_file():
                    raise ValueError(f"{f}: not valid JSON ({exc.msg})") from None
                continue
            if isinstance(data, dict) and data.get("schema") == SCHEMA:
                data["_file"] = str(f)
                records.append(data)
            elif p.is_file():
                raise ValueError(f"{f}: not a clipforge evaluation result (no schema {SCHEMA!r})")
    if not records:
        raise ValueError(f"no clipforge evaluation results found in {[str(i) for i in inputs]}")
    return records


def summary_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per record; robustness rows gain effective robustness when >= 3 models share a dataset."""
    rows = []
    for r in records:
        m, d = r.get("model", {}), r.get("dataset", {})
        rows.append(
            {
                "model": m.get("name") or Path(str(m.get("path") or "model")).name,
                "model_hash": str(m.get("hash", ""))[:12],
                "dataset": d.get("name"),
                "split": d.get("split"),
                "shift": d.get("shift") or "",
                "task": r.get("task"),
                **r.get("summary", {}),
            }
        )
    _add_effective_robustness(records, rows)
    return rows


def _add_effective_robustness(records: Sequence[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        if r.get("task") == "robustness":
            groups.setdefault(str(r["dataset"].get("name")), []).append(i)
    for members in groups.values():
        if len(members) < 3:
            continue
        tables = [{t["variant"]: t for t in records[i]["metrics"]["table"]} for i in members]
        variants = [v for v in tables[0] if v != "in-distribution" and all(v in t for t in tables)]
        for v in variants:
            ids = [t["in-distribution"]["zeroshot_accuracy"] for t in tables]
            er = effective_robustness(ids, [t[v]["zeroshot_accuracy"] for t in tables])
            for i, e in zip(members, er):
                rows[i][f"{v}_effective_robustness"] = float(e)
        for i in members:
            ers = [rows[i][f"{v}_effective_robustness"] for v in variants]
            rows[i]["effective_robustness"] = float(np.mean(ers)) if ers else None


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    cols = list(LEAD_COLUMNS)
    for row in rows:
        cols += [k for k in row if k not in cols]
    return cols


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1e3 or (0 < abs(value) < 1e-3) else f"{value:.4f}"
    return str(value)


def write_report(inputs: Iterable[str | Path], out: str | Path) -> tuple[Path, Path]:
    """Merge result JSONs into `<out>.csv` (all columns) and `<out>.md` (one table per task)."""
    rows = summary_rows(load_results(inputs))
    out = Path(out)
    if out.suffix.lower() in (".csv", ".md"):
        out = out.with_suffix("")
    out.parent.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out.with_suffix(".csv"), out.with_suffix(".md")
    cols = _columns(rows)
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols)
        writer.writeheader()
        writer.writerows({k: ("" if row.get(k) is None else row.get(k)) for k in cols} for row in rows)
    lines = ["# clipforge evaluation report", ""]
    order = {t: i for i, t in enumerate(EVAL_TASKS.list())}
    for task in sorted(dict.fromkeys(r["task"] for r in rows), key=lambda t: order.get(t, len(order))):
        sub = [r for r in rows if r["task"] == task]
        tcols = [c for c in _columns(sub) if c != "task"]
        lines += [f"## {task}", "", "| " + " | ".join(tcols) + " |", "|" + "---|" * len(tcols)]
        lines += ["| " + " | ".join(_fmt(r.get(c)) for c in tcols) + " |" for r in sub]
        lines.append("")
    md_path.write_text("\n".join(lines), encoding="utf-8")
    return csv_path, md_path
