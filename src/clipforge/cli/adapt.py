"""`clipforge adapt --method NAME --dataset DATASET --shots K --out DIR`: few-shot adaptation of a CLIP model.

Fits one method on k labelled images per class of the dataset's train split (validation: min(k, 4)
per class of its val split), saves the adapter to --out (usable by `clipforge classify --adapter`),
and reports test accuracy next to zero-shot. `--base-to-novel` trains on the first half of the
classes and reports base / novel / harmonic-mean accuracy instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import Any

from ..adapt import Backbone, FeatureCache, get_method, list_methods
from ..adapt import protocols as P
from ..evaluate import default_cache_dir, resolve_dataset
from ..zeroshot import resolve_templates
from .common import add_model_arguments, load_from_args

HELP = "few-shot adaptation: CoOp, CoCoOp, MaPLe, CLIP-Adapter, Tip-Adapter(-F), GDA, probe, TPT, LoRA, WiSE-FT, soups"


def _hparam(text: str) -> tuple[str, Any]:
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip().replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.strip().replace("-", "_"), value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", help="adaptation method (see --list)")
    parser.add_argument("--list", action="store_true", help="list the methods and their hyperparameters")
    parser.add_argument("--dataset", help="shapes:TASK, a class-folder tree, a CSV/JSONL manifest or a registry .json")
    parser.add_argument("--shots", type=int, default=16, help="labelled images per class (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the few-shot draw (default 0)")
    parser.add_argument(
        "--set",
        dest="hparams",
        type=_hparam,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a method hyperparameter, JSON-parsed (repeatable), e.g. --set n_ctx=4 --set ctx_init='\"a photo of a\"'",
    )
    parser.add_argument(
        "--templates", default=None, help="prompt templates: a set name or file (default: the dataset's)"
    )
    parser.add_argument("--out", default=None, help="directory to save the fitted adapter in")
    parser.add_argument("--base-to-novel", action="store_true", help="train on base classes, test base and novel")
    parser.add_argument("--views", type=int, default=10, help="augmented views per image for cached features")
    parser.add_argument(
        "--crop-scale",
        type=float,
        nargs=2,
        default=(0.5, 1.0),
        metavar=("MIN", "MAX"),
        help="RandomResizedCrop area range of every augmentation (default 0.5 1.0)",
    )
    parser.add_argument("--no-flip", action="store_true", help="no horizontal flips (labels such as left/right)")
    parser.add_argument("--max-samples", type=int, default=None, help="at most N images per split")
    parser.add_argument("--no-eval", action="store_true", help="fit and save only")
    parser.add_argument("--cache-dir", default="default", help="feature cache (default: the evaluation cache)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write cached features")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (also off with --json)")
    add_model_arguments(parser)


def _list_methods() -> int:
    for name in list_methods():
        cls = get_method(name)
        fields = ", ".join(f"{f.name}={_default(f)}" for f in dataclasses.fields(cls.Config))
        print(f"{name:<14} [{cls.input}] {fields}")
    return 0


def _default(field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else "?"


def run(args: argparse.Namespace) -> int:
    if args.list:
        return _list_methods()
    if not args.method or not args.dataset:
        raise ValueError("--method and --dataset are required (see --list for methods)")
    if args.shots < 1:
        raise ValueError("--shots must be at least 1")
    if args.precision != "fp32":
        raise ValueError("adapters are fitted in fp32; drop --precision")

    cls = get_method(args.method)
    if args.base_to_novel:
        P.require_new_classes(cls)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    augment = {"crop_scale": tuple(args.crop_scale), "hflip": not args.no_flip}
    hparams = {**{k: v for k, v in augment.items() if k in fields}, **dict(args.hparams)}
    cls.check_hparams(hparams, where=f"--set ({args.method})")
    model, preprocess, tokenizer = load_from_args(args)
    source = Backbone.source_of(args.model)
    backbone = Backbone(model, preprocess, tokenizer, source, progress=not (args.json or args.quiet))
    splits = P.dataset_splits(resolve_dataset(args.dataset), args.max_samples)
    if args.templates:
        splits.templates = resolve_templates(args.templates)
    cache = (
        None if args.no_cache else FeatureCache(default_cache_dir() if args.cache_dir == "default" else args.cache_dir)
    )
    views = {"views": args.views, "augment": {"scale": augment["crop_scale"], "hflip": augment["hflip"]}}
    start = time.perf_counter()
    result: dict[str, Any] = {"method": args.method, "dataset": args.dataset, "shots": args.shots, "seed": args.seed}
    if args.base_to_novel:
        result["base_to_novel"] = P.base_to_novel_run(
            args.method, backbone, splits, args.shots, args.seed, hparams, cache, **views
        )
    else:
        adapter, _ = P.few_shot_run(
            args.method, backbone, splits, args.shots, args.seed, hparams, cache, **views, test=False
        )
        result["fit_seconds"] = round(time.perf_counter() - start, 2)
        if args.out:
            result["saved"] = str(adapter.save(args.out))
        if not args.no_eval:
            splits.test.ensure(backbone, features=True, cache=cache)
            zeroshot = get_method("zeroshot")(backbone, splits.classnames, splits.templates)
            result["test_accuracy"] = P.score(adapter, splits.test)
            result["zeroshot_accuracy"] = P.score(zeroshot, splits.test)
    result["seconds"] = round(time.perf_counter() - start, 2)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            shown = f"{value:.4f}" if isinstance(value, float) else value
            print(f"{key:>18}: {shown}")
    if "saved" in result:
        print(f"use it with: clipforge classify IMAGES --adapter {result['saved']}", file=sys.stderr)
    return 0
