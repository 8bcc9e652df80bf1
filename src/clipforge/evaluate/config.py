"""`EvalConfig`: every setting of an evaluation run in one validated object.

`evaluate(tasks, datasets, model, out_dir, config)` takes one; the CLI builds it from its flags and
`clipforge eval --eval-config FILE.json` reads one (flags given on the command line win).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence, get_args

from ..config import Activation
from ..runtime import Backend, Precision, as_backend, as_precision
from .ranking import DEFAULT_GALLERY_CHUNK, DEFAULT_QUERY_CHUNK

DEFAULT_SHOTS = (1, 2, 4, 8, 16)
DEFAULT_SEEDS = (0, 1, 2)


@dataclass
class EvalConfig:
    """How to evaluate: data selection, task options, feature cache, model runtime, output."""

    split: str | None = None  # evaluation split (None: each dataset's default; a spec's own split wins)
    max_samples: int | None = None  # cap on evaluation images per dataset
    templates: str | Sequence[str] | None = None  # prompt templates: a named set, a file, or strings
    seeds: Sequence[int] = DEFAULT_SEEDS  # few-shot draws
    shots: Sequence[int] = DEFAULT_SHOTS  # few-shot k values
    probe_robustness: bool = False  # robustness: also fit a linear probe per shift
    batch_size: int = 64
    num_workers: int | None = None  # image decoding processes (None: automatic)
    query_chunk: int = DEFAULT_QUERY_CHUNK  # retrieval queries per similarity chunk
    gallery_chunk: int = DEFAULT_GALLERY_CHUNK
    cache_dir: str | Path | None = "default"  # None disables the feature cache
    device: str | None = None
    precision: Precision = "fp32"
    backend: Backend | None = None
    model_config: Any = None  # architecture override for loading the checkpoint (preset name or ModelConfig JSON)
    activation: Activation | None = None
    adapter: str | Path | None = None  # a fitted adapter directory whose head replaces the prompt ensemble
    plots: bool = True
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # options of tasks registered by others

    def __post_init__(self) -> None:
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"max_samples must be positive, got {self.max_samples}")
        self.shots, self.seeds = tuple(self.shots), tuple(self.seeds)
        if not self.shots or any(int(k) < 1 for k in self.shots):
            raise ValueError(f"shots must be positive integers, got {list(self.shots)}")
        if not self.seeds:
            raise ValueError("give at least one seed")
        for name in ("batch_size", "query_chunk", "gallery_chunk"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        self.precision, self.backend = as_precision(self.precision), as_backend(self.backend)
        if self.activation is not None and self.activation not in get_args(Activation):
            raise ValueError(f"activation {self.activation!r}: expected one of {', '.join(get_args(Activation))}")

    def replace(self, **changes: Any) -> EvalConfig:
        """A copy with `changes` applied (unknown names are a ValueError naming the valid ones)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown evaluation setting(s) {unknown}; valid: {', '.join(sorted(known))}")
        return EvalConfig(**{**asdict(self), **changes})

    @classmethod
    def from_json(cls, path: str | Path) -> EvalConfig:
        """Read a JSON object of settings (a subset is fine); errors name the file."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: cannot read an evaluation config ({e})") from e
        if not isinstance(data, dict):
            raise ValueError(f"{path}: an evaluation config must be a JSON object, got {type(data).__name__}")
        try:
            return cls().replace(**data)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from e

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
