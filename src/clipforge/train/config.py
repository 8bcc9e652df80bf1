"""Training configuration as data: one dataclass, JSON round-trip, saved next to every checkpoint."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass
class TrainConfig:
    """Everything that determines a training run (together with the data it reads).

    `model` is a preset name or a config JSON path (train from scratch) and `init` an optional
    checkpoint `clipforge.load` reads (fine-tune). `data` lists sources (see `train.data.open_source`)
    with optional sampling `weights`. `batch_size` is the global batch per optimiser step; it is
    split over processes and `accum_steps` micro-batches, with negatives kept across all of them.
    """

    out_dir: str = "runs/clip"
    model: str = "small"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    tokenizer: Literal["bpe", "words"] = "bpe"
    data: list[Any] = field(default_factory=lambda: ["shapes:20000"])
    weights: list[float] | None = None
    samples_per_epoch: int | None = None
    val_data: str | None = "shapes"
    loss: Literal["clip", "siglip", "cloob"] = "clip"
    local_loss: bool = False
    gather_with_grad: bool = True
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 128
    accum_steps: int = 1
    lr: float = 5e-4
    weight_decay: float = 0.2
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    warmup_steps: int = 100
    min_lr: float = 0.0
    grad_clip: float | None = None
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    grad_checkpointing: bool = False
    lock_image: bool = False
    lock_text: bool = False
    train_crop_scale: tuple[float, float] = (0.9, 1.0)
    hflip: bool = False
    workers: int = 2
    seed: int = 0
    log_every: int = 10
    save_every: int = 200
    keep_last: int = 3
    eval_every: int = 0
    val_samples: int = 512
    tensorboard: bool = False
    device: str | None = None

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        self.train_crop_scale = tuple(self.train_crop_scale)  # type: ignore[assignment]
        if isinstance(self.data, (str, dict)):
            self.data = [self.data]
        checks = [
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.accum_steps >= 1, "accum_steps must be >= 1"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.keep_last >= 1, "keep_last must be >= 1"),
            (bool(self.data), "data must name at least one source"),
            (self.weights is None or len(self.weights) == len(self.data), "weights must match data in length"),
            (self.loss in ("clip", "siglip", "cloob"), f"loss must be clip, siglip or cloob, not {self.loss!r}"),
            (
                self.precision in ("fp32", "bf16", "fp16"),
                f"precision must be fp32, bf16 or fp16, not {self.precision!r}",
            ),
            (not (self.lock_image and self.lock_text), "lock_image and lock_text together leave nothing to train"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"train config: {message}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"train config: unknown field(s) {unknown}")
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | Path) -> "TrainConfig":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
