"""`clipforge <command>`: a thin layer over the Python API.

Each command is a module `clipforge.cli.<name>` with `HELP`, `add_arguments(parser)` and
`run(args) -> int`, registered in `clipforge.registry.COMMANDS`; a command whose optional
dependency is missing still appears and says what to install.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Sequence, TextIO

from .. import __version__
from ..extras import MissingExtra, install_hint, require_extra
from ..registry import COMMANDS
from ..zeroshot import UnknownWordsWarning

_COMMAND_MODULES = (
    "demo", "classify", "embed", "convert", "info", "train", "eval", "adapt", "export", "index", "search", "serve",
    "segment", "anomaly", "curate",
)
for _name in _COMMAND_MODULES:
    COMMANDS.register_lazy(_name, f"clipforge.cli.{_name}")

#: the extra a command needs whatever its arguments: checked before the command does any work (and named
#: in the hint when its module cannot even be imported)
EXTRA_OF_COMMAND = {"index": "index", "search": "index", "serve": "serve", "anomaly": "anomaly", "curate": "curate"}


class _MissingDependency:
    """Stands in for a command whose optional dependency is not installed: it says what to install."""

    def __init__(self, name: str, missing: str) -> None:
        self.HELP = f"(unavailable: {install_hint(missing, EXTRA_OF_COMMAND.get(name))})"
        self._message = install_hint(missing, EXTRA_OF_COMMAND.get(name))

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("rest", nargs=argparse.REMAINDER)

    def run(self, args: argparse.Namespace) -> int:
        raise MissingExtra(self._message)


def _command_modules():
    """(name, module) of each registered command; a missing optional dependency becomes a stand-in."""
    for name in COMMANDS.list():
        try:
            yield name, COMMANDS.get(name)
        except ModuleNotFoundError as exc:
            if exc.name and not exc.name.startswith("clipforge"):
                yield name, _MissingDependency(name, exc.name.split(".")[0])
            else:
                raise


def build_parser() -> argparse.ArgumentParser:
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
        with warnings.catch_warnings():
            _show_plainly(UnknownWordsWarning, args.command)
            if args.command in EXTRA_OF_COMMAND:
                require_extra(EXTRA_OF_COMMAND[args.command])
            return int(args._run(args) or 0)
    except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
        # Bad input: one clear line, no traceback. (CheckpointError and ImageDecodeError are ValueErrors;
        # programming errors such as KeyError keep their traceback.)
        print(f"clipforge {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _show_plainly(shown: type[Warning], command: str) -> None:
    """Print warnings of class `shown` as one `clipforge CMD: warning: ...` line on stderr (the user's
    input caused them, so no source location); others as Python prints them. Call inside
    `warnings.catch_warnings()`, which restores the previous behaviour."""
    default = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, shown):
            print(f"clipforge {command}: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.simplefilter("always", shown)
    warnings.showwarning = show


if __name__ == "__main__":
    sys.exit(main())
