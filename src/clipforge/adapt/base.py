"""The shared interface of every adaptation method: a frozen `Backbone`, an `Adapter` base class, saving.

An adapter is fitted on a few-shot set and then maps images to class logits in two steps:
`encode(pixels)` gives the adapter's *input* (un-normalised backbone image features for most
methods; the adapter's own image features for methods that change the image encoder; the pixels
themselves for test-time methods) and `logits(inputs)` gives `[N, C]`. Keeping the two steps apart
lets feature-level methods run on cached features, and gives `clipforge classify`/`eval` one surface.

On disk an adapter is a directory with `adapter.json` (method, class names, templates,
hyperparameters, the backbone's path and fingerprint) and `adapter.safetensors` (its own tensors
only; the frozen backbone is referenced, never copied).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Sequence, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from ..api import load, resolve_model_path
from ..checkpoints.io import read_tensor_file, save_safetensors
from ..data.embedding import encode_pixels
from ..extras import require
from ..files import write_text_atomic
from ..model.clip import CLIP
from ..registry import ADAPTERS
from ..transforms import ImageTransform, TrainTransform
from ..zeroshot import classifier_weights, resolve_templates
from .hparams import check_values
from .training import train_loop

if TYPE_CHECKING:
    from .data import FewShotData

FORMAT = "clipforge-adapter"
FORMAT_VERSION = 1
CONFIG_NAME = "adapter.json"
#: `Backbone.source` of the model embedded in the package (`clipforge.load(None)`)
DEFAULT_SOURCE = "<embedded default model>"
WEIGHTS_NAME = "adapter.safetensors"
_Fitted = TypeVar("_Fitted", bound="Adapter")


class Backbone:
    """A frozen CLIP model with its preprocessing and tokenizer; `source` is where it was loaded from.
    With `progress`, feature extraction and the methods' training loops show progress bars (stderr)."""

    def __init__(
        self,
        model: CLIP,
        preprocess: ImageTransform,
        tokenizer: Any,
        source: str | None = None,
        progress: bool = False,
    ) -> None:
        self.model = model.eval().requires_grad_(False)
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.source = source
        self.progress = progress
        self._fingerprint: str | None = None

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device | None = "cpu") -> "Backbone":
        """Load any checkpoint `clipforge.load` reads (None or `DEFAULT_SOURCE`: the embedded default model)."""
        if path == DEFAULT_SOURCE:
            path = None
        model, preprocess, tokenizer = load(path, device=device)
        return cls(model, preprocess, tokenizer, cls.source_of(path))

    @staticmethod
    def source_of(path: str | Path | None) -> str:
        """What an adapter records as its backbone: `DEFAULT_SOURCE` or the checkpoint's absolute path."""
        return DEFAULT_SOURCE if path is None else str(Path(resolve_model_path(path)).resolve())

    @property
    def device(self) -> torch.device:
        return self.model.logit_scale.device

    @property
    def embed_dim(self) -> int:
        return int(self.model.config.embed_dim)

    @property
    def logit_scale(self) -> float:
        """CLIP's inverse temperature `exp(logit_scale)` (≈100 for OpenAI models)."""
        return float(self.model.logit_scale.detach().exp())

    @property
    def fingerprint(self) -> str:
        """Hash of the backbone's config and weights (recorded in saved adapters)."""
        if self._fingerprint is None:
            self._fingerprint = self.model.fingerprint()
        return self._fingerprint

    def text_classifier(self, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        """Zero-shot class weights [C, d]: template-ensembled, L2-normalised text embeddings."""
        return classifier_weights(self.model, self.tokenizer, list(classnames), list(templates)).float()

    @torch.no_grad()
    def encode_pixels(self, pixels: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Un-normalised image features [N, d] of preprocessed pixels, on the CPU."""
        return encode_pixels(self.model, pixels, batch_size)

    def train_transform(self, scale: tuple[float, float] = (0.5, 1.0), hflip: bool = True) -> TrainTransform:
        """RandomResizedCrop + flip at the model's resolution (the few-shot papers' augmentation)."""
        return TrainTransform(self.preprocess.config, scale=scale, hflip=hflip)


class Adapter(nn.Module):
    """Base class: `fit(train, val)` then `logits(encode(pixels))`; `save(dir)` / `load_adapted(dir)`.

    Subclasses set `method`, a `Config(Adapter.Config)` dataclass of hyperparameters (declared as
    `config: Config`, so its fields type-check) and `input`, and implement `_fit` and `logits` (and
    `encode` unless it is the backbone's image encoder). The backbone is held outside the module
    tree, so `state_dict()` holds the adapter's tensors only.
    """

    method: ClassVar[str] = ""
    #: what `logits` consumes: "features" = the frozen backbone's un-normalised image features (cacheable),
    #: "encoded" = the adapter's own image features (`encode` runs its adapted encoder), "pixels" = images
    input: ClassVar[Literal["features", "encoded", "pixels"]] = "features"
    #: whether `fit` uses features of augmented views (`FewShotData.views`) when they are present
    uses_views: ClassVar[bool] = False
    #: whether the method can build a classifier for class names never trained on (base-to-novel);
    #: `open_vocabulary` answers for one configured adapter
    supports_new_classes: ClassVar[bool] = False
    #: optional packages (import names) the method needs, checked before any work (`clipforge.extras`)
    requires: ClassVar[tuple[str, ...]] = ()

    @dataclasses.dataclass
    class Config:
        pass

    def __init__(
        self,
        backbone: Backbone,
        classnames: Sequence[str],
        templates: str | Sequence[str] = ("a photo of a {}.",),
        **hparams: Any,
    ) -> None:
        super().__init__()
        object.__setattr__(self, "backbone", backbone)
        self.classnames = [str(c) for c in classnames]
        if len(self.classnames) < 2:
            raise ValueError(f"{self.method}: need at least two class names, got {self.classnames}")
        self.templates = resolve_templates(templates)
        self.check_hparams(hparams)
        self.config = self.Config(**hparams)
        self.fitted = False

    backbone: Backbone

    @classmethod
    def check_hparams(cls, hparams: dict[str, Any], where: str | None = None) -> None:
        """Refuse unknown hyperparameters and values their `Config` annotation does not accept (errors start
        with `where`, default the method's name), and check that the optional packages the method
        `requires` are installed: all before any work."""
        check_values(cls.Config, hparams, where or cls.method)
        require(cls.requires)

    def _train_loop(self, *args: Any, **kwargs: Any) -> list[float]:
        """`training.train_loop(...)` with a bar named after the method when the backbone shows progress."""
        return train_loop(*args, progress=self.backbone.progress, desc=self.method, **kwargs)

    # -- the interface ---------------------------------------------------------------------------

    @property
    def hparams(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    @property
    def open_vocabulary(self) -> bool:
        """Whether `for_classes` can build a classifier for class names never trained on (base-to-novel).

        The method's `supports_new_classes`, unless the hyperparameters rule it out (CoOp's `csc`).
        """
        return self.supports_new_classes

    def fit(self: _Fitted, train: FewShotData, val: FewShotData | None = None) -> _Fitted:
        """Fit on a labelled few-shot set; `val` (if given) chooses hyperparameters. Returns self."""
        labels = train.labels
        if len(labels) == 0:
            raise ValueError(f"{self.method}: the training set is empty")
        if int(labels.min()) < 0 or int(labels.max()) >= self.num_classes:
            raise ValueError(
                f"{self.method}: labels must lie in [0, {self.num_classes}), got {labels.unique().tolist()}"
            )
        self.train()
        self._fit(train, val)
        self.eval()
        self.fitted = True
        return self

    def _fit(self, train: FewShotData, val: FewShotData | None) -> None:
        raise NotImplementedError

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """The adapter's input for `logits`: by default the backbone's un-normalised image features."""
        return self.backbone.encode_pixels(pixels)

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Class logits [N, C] from what `encode` returns."""
        raise NotImplementedError

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.logits(inputs)

    @torch.no_grad()
    def predict(self, pixels: torch.Tensor) -> torch.Tensor:
        """Logits of preprocessed pixels [N, 3, H, W]."""
        return self.logits(self.encode(pixels))

    def probabilities(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.logits(inputs).softmax(dim=-1)

    def for_classes(self, classnames: Sequence[str]) -> "Adapter":
        """The same learned tensors applied to other class names (base-to-novel); open-vocabulary methods only."""
        if not self.open_vocabulary:
            raise ValueError(f"{self.method} learns a closed set of classes; it cannot classify new class names")
        other = type(self)(self.backbone, classnames, self.templates, **self.hparams)
        other._set_extra_state(self._extra_state())
        other._load_saved_state(self._saved_state())
        other.eval()
        other.fitted = self.fitted
        return other

    # -- helpers for subclasses ------------------------------------------------------------------

    def zeroshot_weights(self, classnames: Sequence[str] | None = None) -> torch.Tensor:
        """Template-ensembled text classifier [C, d] of the frozen backbone."""
        return self.backbone.text_classifier(classnames or self.classnames, self.templates)

    @staticmethod
    def normalize(features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features.float(), dim=-1)

    # -- saving ---------------------------------------------------------------------------------

    def _saved_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.state_dict().items()}

    def _load_saved_state(self, state: dict[str, torch.Tensor]) -> None:
        assign_state(self, state)

    def save(self, directory: str | Path) -> Path:
        """Write `adapter.json` + `adapter.safetensors` into `directory` (created if needed)."""
        if not self.fitted:
            raise ValueError(f"{self.method}: fit the adapter before saving it")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "method": self.method,
            "input": self.input,
            "classnames": self.classnames,
            "templates": self.templates,
            "config": self.hparams,
            "extra": self._extra_state(),
            "backbone": {"path": self.backbone.source, "fingerprint": self.backbone.fingerprint},
        }
        save_safetensors(self._saved_state(), directory / WEIGHTS_NAME, metadata={"format": FORMAT})
        write_text_atomic(directory / CONFIG_NAME, json.dumps(meta, indent=2) + "\n")
        return directory

    def _extra_state(self) -> dict[str, Any]:
        """JSON-able state that is not a tensor (e.g. a searched α); restored by `_set_extra_state`."""
        return {}

    def _set_extra_state(self, extra: dict[str, Any]) -> None:
        pass


def as_pair(name: str, value: Sequence[float]) -> tuple[float, float]:
    """A (min, max) hyperparameter as a tuple (JSON and `--set` give lists)."""
    if len(value) != 2:
        raise ValueError(f"{name} must be two numbers (min, max), got {value!r}")
    return (value[0], value[1])


def assign_state(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Put every tensor of `state` in place of the same-named parameter/buffer (shapes may differ)."""
    own = module.state_dict(keep_vars=True)  # persistent tensors only
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"adapter weights do not match: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for key, value in state.items():
        owner_name, _, name = key.rpartition(".")
        owner = module.get_submodule(owner_name)
        param, buffer = owner._parameters.get(name), owner._buffers.get(name)
        if param is not None:
            moved = value.to(param.device, param.dtype)
            owner._parameters[name] = nn.Parameter(moved, requires_grad=param.requires_grad)
        elif buffer is not None:
            owner._buffers[name] = value.to(buffer.device, buffer.dtype)
        else:  # state_dict() lists only tensors that are set
            raise ValueError(f"adapter weights do not match: {key} is neither a parameter nor a buffer")


def read_adapter_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: not an adapter directory (no {CONFIG_NAME})")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a clipforge adapter (format {meta.get('format')!r})")
    if int(meta.get("version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{path}: adapter format version {meta['version']} is newer than this clipforge reads")
    return meta


def load_adapter(
    directory: str | Path, backbone: Backbone | str | Path | None = None, check_backbone: bool = True
) -> Adapter:
    """Rebuild a saved adapter. `backbone` defaults to the checkpoint path recorded at save time."""
    meta = read_adapter_config(directory)
    if not isinstance(backbone, Backbone):
        path = backbone if backbone is not None else meta["backbone"].get("path")
        if path is None:
            raise ValueError(f"{directory}: the adapter does not record its backbone's path; pass the model")
        backbone = Backbone.load(path)
    want = meta["backbone"].get("fingerprint")
    if check_backbone and want and backbone.fingerprint != want:
        raise ValueError(
            f"{directory}: the backbone's weights differ from those the adapter was fitted on "
            f"(fingerprint {backbone.fingerprint} != {want}); pass the right --model (adapters fitted on the "
            "embedded default model before it became a ViT need --model default-rn)"
        )
    cls = ADAPTERS.get(meta["method"])
    adapter = cls(backbone, meta["classnames"], meta["templates"], **meta["config"])
    tensors, _ = read_tensor_file(Path(directory) / WEIGHTS_NAME)
    adapter._set_extra_state(meta.get("extra", {}))
    adapter._load_saved_state(tensors)
    adapter.eval()
    adapter.fitted = True
    return adapter
