"""`clipforge search DIR "a red car" [--image QUERY.png] [-k 10] [--json]`: query an index."""

from __future__ import annotations

import argparse
import json

import numpy as np

from ..index.search import SearchIndex
from ..zeroshot import warn_unknown_words
from .common import add_model_arguments

HELP = "search an index by text and/or image"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="index directory (from `clipforge index build`)")
    parser.add_argument("text", nargs="?", default=None, help="text query")
    parser.add_argument("--image", default=None, help="image query file (combined with the text if both are given)")
    parser.add_argument("-k", "--top-k", dest="k", type=int, default=10, help="number of results (default 10)")
    parser.add_argument(
        "--target", choices=["image", "caption"], default="image", help="search image or caption embeddings"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per result")
    parser.add_argument("--model", default=None, help="override the checkpoint recorded in the index")
    add_model_arguments(parser, with_model=False, engine=True, architecture=False)


def run(args: argparse.Namespace) -> int:

    if args.text is None and args.image is None:
        raise ValueError("give a text query and/or --image FILE")
    if args.text is not None and not args.text.strip():
        raise ValueError("the text query is empty")
    if args.k < 1:
        raise ValueError("-k must be at least 1")
    index = SearchIndex.open(args.directory, args.model, args.device, args.precision, args.backend)
    parts = []
    if args.text is not None:
        warn_unknown_words(index.query_warnings([args.text]))
        parts.append(index.embed_texts([args.text])[0])
    if args.image is not None:
        parts.append(index.embed_images([args.image])[0])
    hits = index.search_vector(np.mean(parts, axis=0), k=args.k, target=args.target)
    for rank, hit in enumerate(hits, 1):
        if args.json:
            print(json.dumps({"rank": rank, **hit.to_dict()}))
        else:
            where = f"{hit.path}:{hit.member}" if hit.member else hit.path
            caption = f"  {hit.caption!r}" if hit.caption else ""
            print(f"{rank:3d}. {hit.score:.4f}  id={hit.id}  {where}{caption}")
    return 0
