"""`clipforge classify IMAGES... --labels "cat,dog"`: zero-shot classification with prompt ensembles
(or `--adapter DIR`: with a fitted few-shot adapter)."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from ..adapt import load_adapted
from ..adapt.surface import AdaptedModel, check_runtime
from ..data.embedding import embed_images
from ..data.inputs import item_images, resolve_items
from ..images import SkipLog
from ..zeroshot import ZeroShotClassifier
from .common import add_model_arguments, load_from_args

HELP = "zero-shot classify images against text labels"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", help="image files, folders, glob patterns, or one CSV manifest")
    parser.add_argument("--labels", default=None, help='comma-separated class names ("cat,dog,car") or a file')
    parser.add_argument(
        "--adapter",
        default=None,
        help="a fitted adapter directory (clipforge adapt --out) instead of --labels: its classes and classifier; "
        "--model defaults to the checkpoint it records",
    )
    parser.add_argument(
        "--templates",
        default="openai",
        help="prompt templates: openai (80), openai7, simple, none, or a file with one per line",
    )
    parser.add_argument("--top-k", type=int, default=3, help="how many classes to show per image")
    parser.add_argument("--batch-size", type=int, default=32, help="images per model call (default 32)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image")
    add_model_arguments(parser, engine=True)


def run(args: argparse.Namespace) -> int:

    if args.top_k < 1:
        raise ValueError("--top-k must be at least 1")
    skipped = SkipLog()
    images = item_images(resolve_items(args.images, skipped=skipped))
    if not len(images):
        if skipped.count:
            print(skipped.summary(), file=sys.stderr)
        raise ValueError("no images found in the given inputs")
    classifier: AdaptedModel | ZeroShotClassifier
    if args.adapter is not None:
        if args.labels is not None:
            raise ValueError("--labels and --adapter exclude each other: the adapter brings its own classes")

        check_runtime(args.precision, args.backend)
        classifier = load_adapted(args.adapter, args.model, device=args.device or "cpu")
        encoder, preprocess = classifier.encoder, classifier.preprocess
    elif args.labels is None:
        raise ValueError("give the classes with --labels (or a fitted adapter with --adapter DIR)")
    else:
        encoder, preprocess, tokenizer = load_from_args(args)
        classifier = ZeroShotClassifier.build(encoder, tokenizer, args.labels, args.templates)
    result = embed_images(
        encoder,
        preprocess,
        images,
        batch_size=args.batch_size,
        normalize=True,
        progress=not args.json,
        name=images.name,
    )
    skipped.merge(result.skipped)
    paths = [images.name(int(i)) for i in result.kept]
    probs = classifier.probabilities(torch.from_numpy(result.features))
    k = min(args.top_k, len(classifier.classnames))
    top_p, top_i = probs.topk(k, dim=-1)
    for path, p_row, i_row in zip(paths, top_p.tolist(), top_i.tolist()):
        preds = [{"label": classifier.classnames[i], "probability": round(p, 6)} for p, i in zip(p_row, i_row)]
        if args.json:
            print(json.dumps({"image": str(path), "predictions": preds}))
        else:
            shown = ", ".join(f"{x['label']} {x['probability']:.1%}" for x in preds)
            print(f"{path}: {shown}")
    for source, reason in skipped.items:
        if args.json:
            print(json.dumps({"image": source, "skipped": reason}))
    if skipped.count:
        print(skipped.summary(), file=sys.stderr)
    return 0 if paths else 1
