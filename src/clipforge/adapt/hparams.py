"""Checking hyperparameter values against a method's `Config` annotations before any work, so
`--set n_ctx=abc` is "coop: n_ctx expects an integer, got 'abc'" instead of a TypeError deep inside a fit."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any


def check_values(config: type, values: dict[str, Any], where: str) -> None:
    """Raise ValueError naming the first value of `values` its `config` dataclass field does not accept."""
    hints = typing.get_type_hints(config)
    known = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown hyperparameter(s) {unknown}; known: {sorted(known)}")
    for name, value in values.items():
        if not accepts(hints[name], value):
            raise ValueError(f"{where}: {name} expects {describe(hints[name])}, got {value!r}")


def accepts(hint: Any, value: Any) -> bool:
    """Whether `value` (as JSON gives it: lists for tuples, ints for floats) fits the annotation `hint`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(accepts(h, value) for h in args)
    if origin is typing.Literal:
        return value in args
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(accepts(h, v) for h, v in zip(args, value))
        return all(accepts(args[0], v) for v in value) if args else True
    if origin is dict:
        return isinstance(value, dict)
    return True  # other annotations: the method checks the value itself


def describe(hint: Any) -> str:
    """`an integer`, `a number or null`, `one of 'end', 'middle', 'front'`, ... for an annotation."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(h) for h in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (tuple, list):
        inner = [describe(h) for h in args if h is not Ellipsis]
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(set(inner)) == 1 and inner[0].startswith(("a ", "an ")):  # "two numbers"
                count = {2: "two", 3: "three", 4: "four"}.get(len(args), str(len(args)))
                return f"a list of {count} {inner[0].split(' ', 1)[1]}s"
            return f"a list of {len(args)} ({', '.join(inner)})"
        return f"a list of ({inner[0]})" if inner else "a list"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))
