"""`clipforge convert SRC DST --to native|hf|openclip [--force]`.

DST must be new or empty (`--force` replaces it); it is written beside itself and renamed into place, so a
failed or refused conversion leaves nothing behind, and it may never be SRC, inside it or around it.
"""

from __future__ import annotations

import argparse

from ..checkpoints import EXPORT_FORMATS, export
from ..files import check_destination
from .common import add_model_arguments, load_from_args

HELP = "convert a checkpoint to native, hf or openclip layout"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="any checkpoint clipforge loads")
    parser.add_argument("dst", help="output directory")
    parser.add_argument(
        "--to",
        dest="fmt",
        choices=EXPORT_FORMATS,
        default="native",
        help="output layout (default native)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace a non-empty DST (written beside it first, then swapped in; never the source itself)",
    )
    add_model_arguments(parser, with_model=False, runtime=False)


def run(args: argparse.Namespace) -> int:

    check_destination(args.dst, args.force, args.src)
    model, _, tokenizer = load_from_args(args, path=args.src)
    out = export(model, args.dst, args.fmt, tokenizer, replace=args.force, source=args.src)
    print(f"wrote {args.fmt} checkpoint to {out}")
    return 0
