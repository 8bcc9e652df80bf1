"""`clipforge <command>`: a thin layer over the Python API.

Each command is a module `clipforge.cli.<name>` with `HELP`, `add_arguments(parser)` and
`run(args) -> int`; it is imported only when present, so optional parts stay optional.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

COMMANDS = (
    "demo",
    "classify",
    "embed",
    "convert",
    "info",
    "train",
    "eval",
    "adapt",
    "export",
    "index",
    "search",
    "serve",
    "data",
)


def _command_modules():
    for name in COMMANDS:
        try:
            yield name, importlib.import_module(f"clipforge.cli.{name.replace('-', '_')}")
        except ModuleNotFoundError as exc:
            if exc.name != f"clipforge.cli.{name.replace('-', '_')}":
                raise


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="clipforge", description="Toolkit for CLIP-style image-text models.")
    parser.add_argument("--version", action="version", version=f"clipforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in _command_modules():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


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
