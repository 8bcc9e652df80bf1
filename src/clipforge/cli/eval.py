"""`clipforge eval`: benchmark a model on datasets; `clipforge eval report`: merge result JSONs."""

from __future__ import annotations

import argparse
import sys

from .common import add_model_arguments

HELP = "evaluate a model: zero-shot, retrieval, linear probe, few-shot, robustness; or merge reports"

TASK_CHOICES = ("zeroshot", "retrieval", "linear-probe", "few-shot", "robustness", "all")


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
        "--dataset",
        nargs="+",
        metavar="DATASET",
        help="shapes:TASK[:SPLIT][@SHIFT][?variety=rich], digits[:numerals], a class-folder tree, "
        "a CSV/TSV/JSONL manifest, or a registry .json",
    )
    parser.add_argument("--split", default=None, help="split to test on (default: test, or all data)")
    parser.add_argument("--out", default="eval-results", help="folder for result JSONs and plots")
    parser.add_argument(
        "--templates",
        default=None,
        help="prompt templates: openai, openai7, simple, none, or a file (default: the dataset's)",
    )
    parser.add_argument("--batch-size", type=int, default=64)
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
    sub = parser.add_subparsers(dest="eval_command", metavar="report")
    rep = sub.add_parser(
        "report",
        help="merge result JSONs into a CSV and a Markdown table",
        description="Merge clipforge eval result JSONs (files or folders) into OUT.csv and OUT.md.",
    )
    rep.add_argument("inputs", nargs="+", help="result JSON files or folders holding them")
    rep.add_argument("--out", dest="report_out", default="report", help="output path without extension")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "eval_command", None) == "report":
        from ..evaluate.results import write_report

        csv_path, md_path = write_report(args.inputs, args.report_out)
        print(md_path.read_text(encoding="utf-8"))
        print(f"wrote {csv_path} and {md_path}", file=sys.stderr)
        return 0
    if not args.dataset:
        raise ValueError("--dataset is required (or use `clipforge eval report FILES...`)")
    bad = [t for t in args.task for t in t.split(",") if t and t not in TASK_CHOICES]
    if bad:
        raise ValueError(f"unknown task(s) {bad}; choose from {', '.join(TASK_CHOICES)}")
    if args.batch_size < 1 or args.chunk_size < 1:
        raise ValueError("--batch-size and --chunk-size must be positive")

    from ..evaluate.runner import evaluate, format_summary

    outputs = evaluate(
        args.task,
        args.dataset,
        args.model,
        args.out,
        split=args.split,
        templates=args.templates,
        batch_size=args.batch_size,
        max_samples=args.max_samples,
        seeds=args.seeds,
        shots=args.shots,
        probe_robustness=args.probe_robustness,
        cache_dir=None if args.no_cache else args.cache_dir,
        device=args.device,
        precision=args.precision,
        backend=args.backend,
        adapter=args.adapter,
        config=args.config,
        activation=args.activation,
        plots=not args.no_plots,
        progress=not args.quiet,
        num_workers=args.workers,
        query_chunk=args.chunk_size,
    )
    print(format_summary(outputs))
    return 0 if any(o.result is not None for o in outputs) else 1
