"""The one data spec syntax, shared by `train --data`, `eval --dataset`, `index build`, `embed`, `classify`.

    SPEC    := SOURCE ( "::" PART )*
    SOURCE  := a path | a glob | a shard pattern (`shards-{000..099}.tar`) | NAME[:FIELD...][@SHIFT]
    PART    := key=value (an option)  |  another path or pattern (joined to SOURCE, as webdataset does)

Named sources (`shapes`, `digits`, anything registered as a dataset) split their fields on ":",
take a distribution shift after "@" and may also take options as `?key=value&key=value`. For the
shapes world a purely numeric field is the sample count, so `shapes:200000`, `shapes:shape:test`
and `shapes:colour:test@blur::n=500` mean the same thing to every command, and so does the drawing
variety option: `shapes:200000::variety=rich`, `shapes:shape:test_style?variety=rich`,
`shapes:seg:val?variety=rich` (the masks, `clipforge.data.masks.open_mask_source`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Spec:
    """A parsed spec: the source text, any joined paths, and the `::key=value` options."""

    text: str
    source: str
    joined: list[str] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)

    @property
    def paths(self) -> list[str]:
        """The source and every path joined to it with `::`."""
        return [self.source, *self.joined]

    def pop_int(self, key: str, default: int | None) -> int | None:
        """Remove and return an integer option (an error names the spec and the option)."""
        if key not in self.options:
            return default
        value = self.options.pop(key)
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"data spec {self.text!r}: option {key!r} must be an integer, got {value!r}") from None

    def no_more_options(self, known: str) -> None:
        """Refuse options nobody consumed, naming them and the known ones."""
        if self.options:
            raise ValueError(f"data spec {self.text!r}: unknown option(s) {sorted(self.options)}; known: {known}")


def parse_spec(text: str) -> Spec:
    """Split a spec into its source, `::`-joined paths and `::key=value` options."""
    text = str(text)
    source, *parts = text.split("::")
    spec = Spec(text, source)
    for part in parts:
        key, eq, value = part.partition("=")
        if eq and key and "/" not in key:
            spec.options[key.strip()] = value.strip()
        elif part:
            spec.joined.append(part)
    return spec


@dataclass
class NamedSource:
    """The fields of a named source: `name:a:b@shift?k=v` → name, [a, b], shift, {k: v}."""

    name: str
    fields: list[str]
    shift: str | None
    options: dict[str, str]


def parse_named(spec: Spec) -> NamedSource:
    """Fields, shift and options of a named source; `::` and `?` options are merged (`::` wins)."""
    body, _, query = spec.source.partition("?")
    body, _, shift = body.partition("@")
    options: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"data spec {spec.text!r}: option {item!r} must look like key=value")
        options[key.strip()] = value.strip()
    options.update(spec.options)
    name, *fields = [p for p in body.split(":") if p] or [""]
    return NamedSource(name, fields, shift or None, options)


def source_name(text: str) -> str:
    """The name a spec starts with (`shapes` of `shapes:colour@blur`), to look up registered sources."""
    return str(text).split("::", 1)[0].split(":", 1)[0].split("?", 1)[0].split("@", 1)[0]
