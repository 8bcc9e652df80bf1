"""`clipforge convert SRC DST --to native|hf|openclip`."""

from __future__ import annotations

import argparse

from ..checkpoints import export
from .common import add_model_arguments, load_from_args

HELP = "convert a checkpoint to native, hf or openclip layout"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="any checkpoint clipforge loads")
    parser.add_argument("dst", help="output directory")
    parser.add_argument(
        "--to",
        dest="fmt",
        choices=["native", "hf", "openclip"],
        default="native",
        help="output layout (default native)",
    )
    add_model_arguments(parser, with_model=False, runtime=False)


def run(args: argparse.Namespace) -> int:

    model, _, tokenizer = load_from_args(args, path=args.src)
    out = export(model, args.dst, args.fmt, tokenizer)
    print(f"wrote {args.fmt} checkpoint to {out}")
    return 0
