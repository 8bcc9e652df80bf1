"""One registry convention for everything chosen by name: `register` / `create` / `list` / `get`.

Architectures, losses, adaptation methods, evaluation tasks, dataset kinds and CLI commands are
each a `Registry`. Entries are registered where they are defined, with a decorator or a call:

    @LOSSES.register("clip")
    class ClipLoss(nn.Module): ...

    ARCHITECTURES.register("ViT-B-32", lambda: ModelConfig(...))
    ADAPTERS.register_lazy("coop", "clipforge.adapt.coop:CoOp")     # imported on first use

`create(name, *args, **overrides)` calls the entry; `get(name)` returns it; `list("ViT-*")`
filters with shell wildcards. An unknown name is a `ValueError` naming the kind, the closest
names and all choices, so every command reports it the same way. The CLI's `choices` come from
`list()`. This module is a leaf: it imports nothing from clipforge.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from typing import Any, Callable, Generic, TypeVar, overload

T = TypeVar("T")


class Registry(Generic[T]):
    """Names → entries (classes, factories or values) of one kind."""

    def __init__(self, kind: str, case_sensitive: bool = True) -> None:
        self.kind = kind
        self.case_sensitive = case_sensitive
        self._entries: dict[str, T] = {}
        self._lazy: dict[str, str] = {}
        self._help: dict[str, str] = {}

    def _key(self, name: str) -> str:
        return name if self.case_sensitive else name.strip().lower()

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, entry: T, help: str = "") -> T: ...

    def register(self, name: str, entry: Any = None, help: str = "") -> Any:
        """Register `entry` under `name` (or, without `entry`, return a decorator that does)."""
        if entry is None:
            return lambda obj: self.register(name, obj, help)
        key = self._key(name)
        if key in self._entries or key in self._lazy:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[key] = entry
        self._help[key] = help or (entry.__doc__ or "").strip().split("\n")[0] if callable(entry) else help
        return entry

    def register_lazy(self, name: str, target: str, help: str = "") -> None:
        """Register "package.module:attribute" (or a whole "package.module"), imported on first use
        (keeps optional parts cheap)."""
        key = self._key(name)
        if key in self._entries or key in self._lazy:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._lazy[key] = target
        self._help[key] = help

    def get(self, name: str) -> T:
        key = self._key(name)
        if key not in self._entries and key in self._lazy:
            module, _, attribute = self._lazy[key].partition(":")
            loaded: Any = importlib.import_module(module)
            self._entries[key] = getattr(loaded, attribute) if attribute else loaded
        if key not in self._entries:
            raise ValueError(self.unknown_message(name))
        return self._entries[key]

    def create(self, name: str, *args: Any, **overrides: Any) -> Any:
        """Call the entry named `name` (a class or factory) with the arguments."""
        factory: Any = self.get(name)
        return factory(*args, **overrides)

    def list(self, pattern: str | None = None) -> list[str]:
        """Registered names in registration order, optionally filtered by a shell wildcard."""
        names = [*self._entries, *(n for n in self._lazy if n not in self._entries)]
        return [n for n in names if pattern is None or fnmatch.fnmatchcase(n, pattern)]

    def help(self, name: str) -> str:
        return self._help.get(self._key(name), "")

    def unknown_message(self, name: str) -> str:
        choices = self.list()
        close = difflib.get_close_matches(self._key(name), choices, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        return f"unknown {self.kind} {name!r}{hint}; choose from {', '.join(choices)}"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (self._key(name) in self._entries or self._key(name) in self._lazy)

    def __iter__(self):
        return iter(self.list())

    def __len__(self) -> int:
        return len(self.list())


#: model architectures: name → a function returning a fresh `ModelConfig` (`clipforge.config`)
ARCHITECTURES: Registry[Callable[[], Any]] = Registry("model config")
#: training losses: name → an `nn.Module` class taking features, returning a scalar (`clipforge.losses`)
LOSSES: Registry[Callable[..., Any]] = Registry("loss", case_sensitive=False)
#: few-shot adaptation methods: name → an `Adapter` class (`clipforge.adapt`)
ADAPTERS: Registry[type] = Registry("adaptation method")
#: evaluation tasks: name → an `EvalTask` (what it needs from a dataset, how it runs) (`clipforge.evaluate`)
EVAL_TASKS: Registry[Any] = Registry("evaluation task")
#: named dataset kinds: spec prefix → a factory(spec text) → DatasetSource (`clipforge.evaluate`)
DATASETS: Registry[Callable[[str], Any]] = Registry("dataset")
#: CLI commands: name → module with HELP, add_arguments(parser), run(args) (`clipforge.cli`)
COMMANDS: Registry[Any] = Registry("command")
