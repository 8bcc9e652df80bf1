"""`clipforge curate metaclip|filter|dedup`: curation of an image–text manifest.

    clipforge curate metaclip --metadata entries.txt --t 20000 --data pairs.csv --out DIR [--seed 0]
    clipforge curate filter --data pairs.csv --out DIR (--clip-score-min 0.25 | --top-fraction 0.3) [--model M]
    clipforge curate dedup --data pairs.csv --out DIR [--threshold 0.95] [--clusters K] [--model M]

Each writes the kept rows in the input's format, columns and order (curated/filtered/deduplicated.<ext>),
a JSON report and a PNG histogram (entry counts, CLIP scores, duplicate similarities).
"""

from __future__ import annotations

import argparse

from ..curate import curate_metaclip
from ..curate.filters import deduplicate, filter_by_clip_score
from .common import add_model_arguments, load_from_args

HELP = "curate image-text data: MetaCLIP balancing, CLIP-score filtering, SemDeDup de-duplication"


def _common(p: argparse.ArgumentParser, captions: bool) -> None:
    p.add_argument("--data", required=True, help="a CSV, TSV, JSONL or parquet manifest with an image column")
    p.add_argument("--out", required=True, help="folder for the kept rows, the JSON report and the PNG histogram")
    p.add_argument("--image-column", default=None, help="image column (default: filepath, image, path ...)")
    if captions:
        p.add_argument("--caption-column", default=None, help="caption column (default: caption, text, title ...)")
    p.add_argument("--chunk-size", type=int, default=10000, help="rows per chunk (default 10000)")
    p.add_argument("--batch-size", type=int, default=64, help="images per embedding batch (default 64)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG histogram")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_model_arguments(p, engine=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    mc = sub.add_parser("metaclip", help="match captions to metadata entries, then cap each entry at about t pairs")
    mc.add_argument("--metadata", required=True, help="metadata entries, one per line (UTF-8)")
    mc.add_argument("--t", type=float, default=20000, help="pairs per entry above which it is sampled (default 20000)")
    mc.add_argument("--data", required=True, help="a CSV, TSV, JSONL or parquet manifest with a caption column")
    mc.add_argument("--out", required=True, help="folder for curated.<ext>, metaclip.json and entry_counts.png")
    mc.add_argument("--seed", type=int, default=0, help="seed of the balancing draws (default 0)")
    mc.add_argument("--caption-column", default=None, help="caption column (default: caption, text, title ...)")
    mc.add_argument(
        "--image-column", default=None, help="image column, whose relative paths are rebased (default: filepath ...)"
    )
    mc.add_argument(
        "--chunk-size", type=int, default=10000, help="rows per chunk of the streaming passes (default 10000)"
    )
    mc.add_argument("--no-plot", action="store_true", help="skip the PNG histogram")
    mc.add_argument("--quiet", action="store_true", help="no progress bars")

    flt = sub.add_parser("filter", help="keep rows whose image-caption CLIP score passes (DataComp)")
    _common(flt, captions=True)
    rule = flt.add_mutually_exclusive_group(required=True)
    rule.add_argument("--clip-score-min", type=float, default=None, help="keep rows scoring at least this cosine")
    rule.add_argument("--top-fraction", type=float, default=None, help="keep this fraction of best-scoring rows")

    dd = sub.add_parser("dedup", help="remove semantic near-duplicate images (SemDeDup: k-means, then per cluster)")
    _common(dd, captions=False)
    dd.add_argument("--threshold", type=float, default=0.95, help="cosine at which images are duplicates (0.95)")
    dd.add_argument("--clusters", type=int, default=None, help="k-means clusters (default: about sqrt(rows / 10))")
    dd.add_argument("--seed", type=int, default=0, help="k-means seed (default 0)")


def run(args: argparse.Namespace) -> int:
    if args.action in ("filter", "dedup"):
        encoder, preprocess, tokenizer = load_from_args(args)
        options = dict(chunk_size=args.chunk_size, batch_size=args.batch_size, image_column=args.image_column,
                       progress=not args.quiet, plot=not args.no_plot)
        if args.action == "filter":
            result = filter_by_clip_score(args.data, args.out, encoder, preprocess, tokenizer,
                                          min_score=args.clip_score_min, top_fraction=args.top_fraction,
                                          caption_column=args.caption_column, **options)
        else:
            result = deduplicate(args.data, args.out, encoder, preprocess, threshold=args.threshold,
                                 clusters=args.clusters, seed=args.seed, **options)
        print(result.summary())
        return 0
    curated = curate_metaclip(
        args.data,
        args.metadata,
        t=args.t,
        out=args.out,
        seed=args.seed,
        chunk_size=args.chunk_size,
        caption_column=args.caption_column,
        image_column=args.image_column,
        progress=not args.quiet,
        plot=not args.no_plot,
    )
    print(curated.summary())
    return 0
