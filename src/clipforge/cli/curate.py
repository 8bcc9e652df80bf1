"""`clipforge curate metaclip`: MetaCLIP curation of an image–text manifest.

    clipforge curate metaclip --metadata entries.txt --t 20000 --data pairs.csv --out DIR [--seed 0]

Writes DIR/curated.<ext> (the kept rows: the input's format, columns and order), DIR/metaclip.json
(entries, counts before/after, pairs in/out, matched/unmatched) and DIR/entry_counts.png.
"""

from __future__ import annotations

import argparse

from ..curate import curate_metaclip

HELP = "curate image-text data: MetaCLIP metadata matching and balancing"


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


def run(args: argparse.Namespace) -> int:
    result = curate_metaclip(
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
    print(result.summary())
    return 0
