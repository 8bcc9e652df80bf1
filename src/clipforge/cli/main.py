"""`clipforge <command>`: a thin layer over the Python API. Each command lives in its own module."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from . import classify, convert, embed, info

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]] = {
    "classify": (classify.add_arguments, classify.run, "zero-shot classify images against text labels"),
    "embed": (embed.add_arguments, embed.run, "embed a folder, glob or CSV of images (and/or texts) to .npy"),
    "convert": (convert.add_arguments, convert.run, "convert a checkpoint to native, hf or openclip layout"),
    "info": (info.add_arguments, info.run, "describe a checkpoint, or list the model presets"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipforge", description="Toolkit for CLIP-style image-text models.")
    parser.add_argument("--version", action="version", version=f"clipforge {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (add, run, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add(p)
        p.set_defaults(_run=run)
    return parser


def _version() -> str:
    from .. import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        # Bad input: one clear line, no traceback. (CheckpointError and ImageDecodeError are ValueErrors.)
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"clipforge {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
