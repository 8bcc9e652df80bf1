"""`clipforge eval`: benchmark a model on datasets; `clipforge eval report`: merge result JSONs."""

from __future__ import annotations

import argparse
import sys

from ..evaluate.config import EvalConfig
from ..evaluate.results import write_report
from ..evaluate.runner import evaluate, format_summary
from ..registry import EVAL_TASKS
from .common import add_model_arguments

HELP = "evaluate a model: zero-shot, retrieval, linear probe, few-shot, robustness; or merge reports"

TASK_CHOICES = (*EVAL_TASKS.list(), "all")

#: flag destinations → EvalConfig fields (the --no-* switches are mapped in `settings_from_args`)
SETTING_FLAGS = {
    "split": "split", "templates": "templates", "batch_size": "batch_size", "max_samples": "max_samples",
    "seeds": "seeds", "shots": "shots", "probe_robustness": "probe_robustness", "cache_dir": "cache_dir",
    "workers": "num_workers", "chunk_size": "query_chunk", "device": "device", "precision": "precision",
    "backend": "backend", "adapter": "adapter", "config": "model_config", "activation": "activation",
}


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--task",
        nargs="+",
        default=["zeroshot"],
        metavar="TASK",
        help=f"one or more of {', '.join(TASK_CHOICES)} (default: zeroshot)",
    )
    parser.add_argument(
        "--eval-config",
        default=None,
        metavar="JSON",
        help="evaluation settings as a JSON object of EvalConfig fields; flags given with non-default values win",
    )
    parser.add_argument(
        "--dataset",
        nargs="+",
        metavar="DATASET",
        help="shapes:TASK[:SPLIT][@SHIFT][?variety=rich], shapes:seg (masks), digits[:numerals], a class-folder "
        "tree, a folder with images/ + masks/, a CSV/TSV/JSONL manifest, or a registry .json",
    )
    parser.add_argument("--split", default=None, help="split to test on (default: test, or all data)")
    parser.add_argument("--out", default="eval-results", help="folder for result JSONs and plots")
    parser.add_argument(
        "--templates",
        default=None,
        help="prompt templates: openai, openai7, simple, none, or a file (default: the dataset's)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per model call (default 64)")
    parser.add_argument("--max-samples", type=int, default=None, help="random subset of at most N images per split")
    parser.add_argument("--seeds", type=_ints, default=[0, 1, 2], help="few-shot seeds (default 0,1,2)")
    parser.add_argument("--shots", type=_ints, default=[1, 2, 4, 8, 16], help="few-shot k values (default 1,2,4,8,16)")
    parser.add_argument(
        "--probe-robustness",
        action="store_true",
        help="robustness: also score an in-distribution linear probe on every shift",
    )
    parser.add_argument(
        "--cache-dir",
        default="default",
        help="feature cache folder (default: $CLIPFORGE_CACHE/features or ~/.cache/clipforge/features)",
    )
    parser.add_argument("--no-cache", action="store_true", help="do not read or write cached features")
    parser.add_argument("--no-plots", action="store_true", help="write JSON only")
    parser.add_argument("--chunk-size", type=int, default=1024, help="queries per similarity chunk")
    parser.add_argument("--workers", type=int, default=None, help="image decoding worker processes")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--adapter",
        default=None,
        help="a fitted adapter directory (clipforge adapt --out): its classifier replaces the prompt ensemble "
        "for zeroshot/robustness; --model defaults to the checkpoint it records",
    )
    add_model_arguments(parser, engine=True)
    sub = parser.add_subparsers(dest="eval_command", metavar="[report]", title="or merge reports")
    rep = sub.add_parser(
        "report",
        help="merge result JSONs into a CSV and a Markdown table",
        description="Merge clipforge eval result JSONs (files or folders) into OUT.csv and OUT.md.",
    )
    rep.add_argument("inputs", nargs="+", help="result JSON files or folders holding them")
    rep.add_argument("--out", dest="report_out", default="report", help="output path without extension")


def settings_from_args(args: argparse.Namespace) -> EvalConfig:
    """The `EvalConfig` of a command line: --eval-config's, overridden by flags that differ from their defaults."""
    defaults = argparse.ArgumentParser()
    add_arguments(defaults)
    base = EvalConfig.from_json(args.eval_config) if args.eval_config else EvalConfig()
    # Without a file every flag (defaults included) is the setting; with one, only flags changed from their defaults.
    explicit = [k for k in SETTING_FLAGS if getattr(args, k) != defaults.get_default(k)]
    changes = {SETTING_FLAGS[k]: getattr(args, k) for k in (explicit if args.eval_config else SETTING_FLAGS)}
    if args.no_cache:
        changes["cache_dir"] = None
    if args.no_plots:
        changes["plots"] = False
    if args.quiet:
        changes["progress"] = False
    return base.replace(**changes)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "eval_command", None) == "report":
        csv_path, md_path = write_report(args.inputs, args.report_out)
        print(md_path.read_text(encoding="utf-8"))
        print(f"wrote {csv_path} and {md_path}", file=sys.stderr)
        return 0
    if not args.dataset:
        raise ValueError("--dataset is required (or use `clipforge eval report FILES...`)")
    outputs = evaluate(args.task, args.dataset, args.model, args.out, settings_from_args(args))
    print(format_summary(outputs))
    return 0 if any(o.result is not None for o in outputs) else 1
