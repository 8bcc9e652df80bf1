"""`clipforge index build|add|info`: embed a corpus into a searchable faiss index.

clipforge index build photos/ --out photos.idx --model my-model/
clipforge index build 'shards/shard-{000000..000099}.tar' --out wds.idx --captions
clipforge index add photos.idx more-photos/
torchrun --nproc_per_node 4 -m clipforge index build photos/ --out photos.idx   # one shard set per rank
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict

from ..index.ann import INDEX_KINDS
from ..index.build import BuildOptions, add_to_index, build_index, summarize
from ..index.search import SearchIndex
from .common import add_model_arguments

HELP = "build, extend or describe a search index over images (folders, globs, CSV, webdataset .tar)"


def _add_embedding_arguments(p: argparse.ArgumentParser, build: bool) -> None:
    p.add_argument("--captions", action="store_true", help="also embed captions (CSV caption column / .txt members)")
    p.add_argument("--image-column", default=None, help="CSV column with image paths (default: filepath/path/image)")
    p.add_argument("--caption-column", default=None, help="CSV column with captions (default: caption/text/title)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None, help="image decoding processes per rank (default: auto)")
    p.add_argument(
        "--index-type",
        default="auto",
        choices=["auto", *INDEX_KINDS],
        help="faiss index (auto: flat < 100k items, hnsw < 2M, ivf_flat < 5M, else ivf_pq)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the build report as JSON")
    if build:
        p.add_argument("--shard-size", type=int, default=10_000, help="rows per embedding shard (unit of resume)")
    # build records --model/--config/--activation in the index; add embeds with what it recorded
    add_model_arguments(p, with_model=build, engine=True, architecture=build)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="embed INPUTS into a new index at --out (re-run to resume)")
    b.add_argument("inputs", nargs="+", help="image folders/files/globs, one CSV manifest, or .tar shards ({a..b})")
    b.add_argument("--out", required=True, help="index directory")
    _add_embedding_arguments(b, build=True)
    a = sub.add_parser("add", help="embed more INPUTS into an existing index (re-run to resume)")
    a.add_argument("directory", help="index directory")
    a.add_argument("inputs", nargs="+", help="image folders/files/globs, one CSV manifest, or .tar shards")
    _add_embedding_arguments(a, build=False)
    i = sub.add_parser("info", help="describe an index")
    i.add_argument("directory", help="index directory")


def run(args: argparse.Namespace) -> int:

    if args.index_command == "info":
        print(json.dumps(SearchIndex.open(args.directory).describe(), indent=2))
        return 0
    opts = BuildOptions(
        shard_size=getattr(args, "shard_size", 10_000),
        captions=args.captions,
        image_column=args.image_column,
        caption_column=args.caption_column,
        index_type=args.index_type,
        batch_size=args.batch_size,
        num_workers=args.workers,
        device=args.device,
        precision=args.precision,
        backend=args.backend,
        progress=not (args.quiet or args.json),
        config=getattr(args, "config", None),
        activation=getattr(args, "activation", None),
    )
    if args.index_command == "build":
        report = build_index(args.inputs, args.out, model=args.model, options=opts)
    else:
        report = add_to_index(args.directory, args.inputs, options=opts)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 reports
        if args.json:
            print(json.dumps(asdict(report)))
        else:
            print(summarize(report))
    return 0
