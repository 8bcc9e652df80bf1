"""Training configuration as data: one dataclass, JSON round-trip, saved next to every checkpoint."""

from __future__ import annotations

import dataclasses
import inspect
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..losses import LOSSES, build_loss

#: Loss constructor arguments the trainer sets itself (from the process group or their own fields).
TRAINER_LOSS_ARGS = ("rank", "world_size", "gather", "local_loss", "gather_with_grad")

#: Model config fields `init_text` takes from its checkpoint (overriding them is refused).
_TEXT_SIDE = frozenset({"text", "tokenizer", "preprocess", "init_logit_scale", "init_logit_bias"})

#: Fields a resumed run may change: how long it runs and its logistics, not what it trains or how.
RESUMABLE_FIELDS = frozenset(
    {"out_dir", "epochs", "max_steps", "workers", "device", "log_every", "save_every", "keep_last", "eval_every"}
)

#: Fields older configs may hold that no longer exist: reading them warns and drops them.
REMOVED_FIELDS = {
    "tensorboard": "it never wrote anything; metrics are in metrics.jsonl and curves.png",
}


@dataclass
class TrainConfig:
    """Everything that determines a training run (together with the data it reads).

    `model` is a preset name or a config JSON path (train from scratch) and `init` an optional
    checkpoint `clipforge.load` reads (fine-tune). `init_text` names a checkpoint whose text tower,
    tokenizer and temperature a fresh image tower (of `model`) is trained against, typically with
    `lock_text` (LiT reversed: a text tower that already separates the captions' words). `data`
    lists sources (see `clipforge.data.pairs.open_pairs`) with optional sampling `weights`. `batch_size` is
    the global batch per optimiser step; it is split over processes and `accum_steps` micro-batches,
    with negatives kept across all of them.

    `loss` names any loss of `clipforge.losses` (clip, siglip, cloob, distill); `loss_options` are
    its other constructor arguments (e.g. `{"alpha": 0.5}` for distill, `{"exchange": "ring"}` for
    siglip, `{"hopfield_scale": 8}` for cloob). `local_loss`/`gather_with_grad` go to the losses that
    take them; setting them for one that does not is an error, not silently ignored. `distill`
    needs `teacher`: a checkpoint `clipforge.load` reads, frozen, whose features are the targets.

    Validation runs on `val_datasets` (evaluation specs as `clipforge eval --dataset` takes them:
    registered names like `shapes:colour`, class folders, manifests, registry JSON): zero-shot
    top-1 where the data has labels, retrieval recall@1 where it has captions, on at most
    `val_samples` images of the split `clipforge eval` would use. With no `val_datasets`, `val_data`
    picks the default: "shapes" (the shapes world's zero-shot shape/colour and retrieval) or None
    (no validation).

    `from_dict`/`from_json` accept configs written by older versions that hold a removed field
    (`tensorboard`): it is dropped with a warning. Unknown fields are an error.
    """

    out_dir: str = "runs/clip"
    model: str = "small"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    init_text: str | None = None
    tokenizer: Literal["bpe", "words"] = "bpe"
    data: list[Any] = field(default_factory=lambda: ["shapes:20000"])
    weights: list[float] | None = None
    samples_per_epoch: int | None = None
    val_data: Literal["shapes"] | None = "shapes"
    val_datasets: list[str] = field(default_factory=list)
    loss: str = "clip"  # a name of the loss registry (`clipforge.losses.LOSSES`)
    loss_options: dict[str, Any] = field(default_factory=dict)
    teacher: str | None = None
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
    device: str | None = None

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        self.train_crop_scale = tuple(self.train_crop_scale)  # type: ignore[assignment]
        if isinstance(self.data, (str, dict)):
            self.data = [self.data]
        if isinstance(self.val_data, str) and self.val_data.lower() in ("", "none"):
            self.val_data = None  # what `--val-data none` gives
        if isinstance(self.val_datasets, str):
            self.val_datasets = [self.val_datasets]
        self.val_datasets = [str(v) for v in self.val_datasets]
        checks = [
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.accum_steps >= 1, "accum_steps must be >= 1"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.max_steps is None or self.max_steps >= 1, "max_steps must be >= 1 (or unset)"),
            (self.lr > 0, "lr must be > 0"),
            (self.keep_last >= 1, "keep_last must be >= 1"),
            (bool(self.data), "data must name at least one source"),
            (self.weights is None or len(self.weights) == len(self.data), "weights must match data in length"),
            (self.val_data in ("shapes", None), f"val_data must be 'shapes' or None, not {self.val_data!r}"),
            (
                self.precision in ("fp32", "bf16", "fp16"),
                f"precision must be fp32, bf16 or fp16, not {self.precision!r}",
            ),
            (not (self.lock_image and self.lock_text), "lock_image and lock_text together leave nothing to train"),
            (not (self.init and self.init_text), "init (a model) and init_text (a text tower) exclude each other"),
            (
                not (self.init_text and set(self.model_overrides) & _TEXT_SIDE),
                f"model_overrides {sorted(set(self.model_overrides) & _TEXT_SIDE)} do not apply with init_text "
                "(the text tower, tokenizer, preprocessing and temperature are the init_text model's)",
            ),
        ]
        for ok, message in checks + self._loss_checks():
            if not ok:
                raise ValueError(f"train config: {message}")

    def _loss_checks(self) -> list[tuple[bool, str]]:
        """The loss, its options, teacher and distributed flags fit together (checked before any work)."""
        if self.loss not in LOSSES:
            return [(False, f"loss must be one of {', '.join(LOSSES)}, not {self.loss!r}")]
        if not isinstance(self.loss_options, dict):
            return [(False, f"loss_options must be a JSON object, not {self.loss_options!r}")]
        accepted = _loss_parameters(self.loss)
        reserved = sorted(set(self.loss_options) & set(TRAINER_LOSS_ARGS))
        unknown = sorted(set(self.loss_options) - accepted)
        checks = [
            (
                not reserved,
                f"loss_options may not set {reserved}: the trainer sets those (local_loss, gather_with_grad: fields)",
            ),
            (not unknown, f"loss_options {unknown} are not options of the {self.loss} loss; it takes {_own(accepted)}"),
            (
                not (self.loss == "cloob" and "inv_tau" in self.loss_options),
                "cloob's inv_tau is unused here: the trainer passes the model's learned logit scale "
                "(set model_overrides init_logit_scale to choose where it starts)",
            ),
            (
                not self.local_loss or "local_loss" in accepted,
                f"local_loss does not apply to the {self.loss} loss"
                + (" (SigLIP always scores local images against all texts)" if self.loss == "siglip" else ""),
            ),
            (
                self.gather_with_grad or "gather_with_grad" in accepted,
                f"gather_with_grad=False does not apply to the {self.loss} loss"
                + (" (SigLIP always gathers with gradient)" if self.loss == "siglip" else ""),
            ),
            (
                self.loss != "distill" or bool(self.teacher),
                "loss distill needs teacher (a checkpoint clipforge.load reads)",
            ),
            (self.loss == "distill" or not self.teacher, f"teacher is used by loss distill only, not by {self.loss}"),
        ]
        if all(ok for ok, _ in checks):
            try:
                build_loss(self.loss, **self.loss_kwargs())
            except (TypeError, ValueError) as exc:
                checks.append((False, f"loss_options for {self.loss}: {exc}"))
        return checks

    def loss_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the loss, except rank and world size: options plus the accepted flags."""
        accepted = _loss_parameters(self.loss)
        flags = {"local_loss": self.local_loss, "gather_with_grad": self.gather_with_grad}
        return {**self.loss_options, **{k: v for k, v in flags.items() if k in accepted}}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Build from a dict; removed fields are dropped with a warning, unknown ones are an error."""
        data = dict(data)
        for name in sorted(set(data) & set(REMOVED_FIELDS)):
            warnings.warn(
                f"train config: field {name!r} was removed and is ignored ({REMOVED_FIELDS[name]})",
                UserWarning,
                stacklevel=2,
            )
            del data[name]
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"train config: unknown field(s) {unknown}")
        return cls(**data)

    def differences(self, saved: dict[str, Any]) -> list[str]:
        """`field: saved -> this` for each field outside `RESUMABLE_FIELDS` where a saved config differs."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a removed field of an old run changes nothing
            old = json.loads(json.dumps(TrainConfig.from_dict(saved).to_dict()))
        new = json.loads(json.dumps(self.to_dict()))
        return [
            f"{name}: {json.dumps(old[name])} -> {json.dumps(new[name])}"
            for name in new
            if name not in RESUMABLE_FIELDS and old[name] != new[name]
        ]

    @classmethod
    def from_json(cls, path: str | Path) -> "TrainConfig":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def _loss_parameters(name: str) -> set[str]:
    """Constructor argument names of a `clipforge.losses` loss."""
    return set(inspect.signature(type(build_loss(name))).parameters)


def _own(params: set[str]) -> str:
    """A loss's own options (what `loss_options` may set), for error messages."""
    own = sorted(params - set(TRAINER_LOSS_ARGS))
    return ", ".join(own) if own else "no options"
