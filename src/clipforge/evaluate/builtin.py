"""Built-in datasets that need no download: the shapes world and scikit-learn's digits.

Specs: `shapes:TASK[:SPLIT][@SHIFT][?seed=0&image_size=64&n=1000&captions=1&variety=classic]` with TASK
one of the shapes world's classification tasks (shape, colour, shape_colour, size, position, style) or
`captions` (multi-object scenes, retrieval only), and `variety` one of the world's drawing varieties
(classic, rich, clean; the rich ones add the `test_style` split of held-out drawing styles);
`digits[:words|:numerals][?image_size=64]`. The shapes world's masks, `shapes:seg[:SPLIT][:N]`, are
an image + mask dataset for the `segmentation` task (`clipforge.evaluate.segmentation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ..data import shapes as sw
from ..data.spec import parse_named
from ..data.spec import parse_spec as parse_data_spec
from .datasets import DatasetSource, EvalDataset, digest, stratified_split
from .segmentation import MaskDataset
from .sources import register_dataset

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_TEMPLATES = (
    "a photo of the number {}.",
    "a handwritten digit {}.",
    "the digit {}.",
    "a black and white image of the number {}.",
)


def parse_spec(spec: str) -> tuple[list[str], str | None, dict[str, str]]:
    """`name:a:b@shift?k=v::k2=v2` → (["name", "a", "b"], "shift", {"k": "v", "k2": "v2"}).

    The syntax is `clipforge.data.spec`'s.
    """
    named = parse_named(parse_data_spec(spec))
    return [named.name, *named.fields], named.shift, named.options


def _int_option(options: dict[str, str], key: str, default: int, spec: str) -> int:
    try:
        return int(options.pop(key, default))
    except ValueError:
        raise ValueError(f"dataset {spec!r}: option {key!r} must be an integer") from None


def _no_extra(options: dict[str, str], spec: str, known: str) -> None:
    if options:
        raise ValueError(f"dataset {spec!r}: unknown option(s) {sorted(options)}; known: {known}")


# -- shapes world ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShapesImages:
    """The images of a shapes world, rendered on demand."""

    world: sw.ShapesWorld

    def __len__(self) -> int:
        return len(self.world)

    def load(self, index: int) -> Image.Image:
        return self.world.sample(index).image


class ShapesSource(DatasetSource):
    """A view of the shapes world: one attribute as class label, plus the scenes' captions."""

    DEFAULT_SIZES = {"train": 2000, "val": 500, "test": 1000, "test_compositional": 1000, "test_style": 1000}

    def __init__(
        self,
        task: str = "shape",
        seed: int = 0,
        image_size: int = 64,
        size: int | None = None,
        captions_per_image: int = 1,
        split: str | None = None,
        shift: str | None = None,
        variety: str = "classic",
    ) -> None:
        if task != "captions" and task not in sw.TASKS:
            raise ValueError(f"shapes task must be one of {', '.join((*sw.TASKS, 'captions'))}, got {task!r}")
        self.variety = variety
        self._world = sw.ShapesWorld(variety=variety)  # validates the variety; knows its splits
        if split is not None and split not in self._world.splits:
            raise ValueError(f"shapes split must be one of {', '.join(self._world.splits)}, got {split!r}")
        if shift is not None and shift not in sw.SHIFTS:
            raise ValueError(f"shapes shift must be one of {', '.join(sw.SHIFTS)}, got {shift!r}")
        if captions_per_image < 0:
            raise ValueError("captions per image must be >= 0")
        self.task, self.seed, self.image_size = task, seed, image_size
        self.size, self.captions_per_image = size, captions_per_image
        self.fixed_split, self.fixed_shift = split, shift
        self.name = f"shapes:{task}" if variety == "classic" else f"shapes:{task}?variety={variety}"
        if task == "captions":
            self.classnames, self.templates = None, None
        else:
            view = sw.ShapesClassification(task=task)
            self.classnames, self.templates = list(view.classnames), list(view.templates)

    @property
    def splits(self) -> tuple[str, ...]:
        return self._world.splits

    @property
    def shifts(self) -> tuple[str, ...]:
        return tuple(s for s in sw.SHIFTS if not (self.task == "style" and s == "sketch"))

    def default_split(self) -> str:
        return self.fixed_split or "test"

    def robustness_variants(self) -> list[tuple[str, str, str | None]]:
        """(name, split, shift) of every distribution shift, the held-out compositions and styles."""
        variants: list[tuple[str, str, str | None]] = [(s, "test", s) for s in self.shifts]
        if self.task != "captions":
            variants.append(("compositional", "test_compositional", None))
        if "test_style" in self.splits:
            variants.append(("style", "test_style", None))
        return variants

    def default_shift(self) -> str | None:
        return self.fixed_shift

    def _load(self, split: str, shift: str | None, max_samples: int | None = None) -> EvalDataset:
        n = self.size or self.DEFAULT_SIZES[split]
        if max_samples is not None:
            n = min(n, max_samples)
        world = sw.ShapesWorld(
            seed=self.seed, image_size=self.image_size, split=split, size=n, shift=shift, variety=self.variety
        )
        labels = None
        if self.task != "captions":
            view = sw.ShapesClassification(world, task=self.task)
            world, labels = view.world, np.asarray(view.targets)
        captions, owner = self._captions(world)
        return EvalDataset(
            name=self.name,
            split=split,
            shift=shift,
            images=ShapesImages(world),
            fingerprint=digest("shapes", repr(world), self.task, self.captions_per_image),
            labels=labels,
            classnames=self.classnames,
            templates=self.templates,
            captions=captions,
            caption_image=owner,
            info={
                "world": {
                    "seed": world.seed,
                    "image_size": world.image_size,
                    "size": world.size,
                    "variety": world.variety_config.name,
                }
            },
        )

    def _captions(self, world: sw.ShapesWorld) -> tuple[list[str] | None, np.ndarray | None]:
        """The scene's own caption plus `captions_per_image - 1` re-phrasings of the same objects."""
        k = self.captions_per_image
        if k == 0:
            return None, None
        captions: list[str] = []
        split_id = sw.SPLITS.index(world.split)
        for i in range(len(world)):
            captions.append(world.sample(i).caption)
            objects = world.objects(i)[0] if k > 1 else []
            for j in range(1, k):
                rng = np.random.default_rng([world.seed, split_id, i, 1000 + j])
                captions.append(sw.make_caption(rng, objects)[0])
        return captions, np.repeat(np.arange(len(world)), k)


def _shapes_factory(spec: str) -> ShapesSource | MaskDataset:
    parts, shift, options = parse_spec(spec)
    counts = [p for p in parts[1:] if p.isdigit()]  # a numeric field is the sample count, as in training
    parts = [p for p in parts if not p.isdigit()]
    if len(parts) > 3 or len(counts) > 1:
        raise ValueError(f"dataset {spec!r}: expected shapes:TASK[:SPLIT][:N][@SHIFT]")
    if counts:
        options.setdefault("n", counts[0])
    task = parts[1] if len(parts) > 1 else "captions"
    if task == "seg":  # the shapes world's masks: an image + mask dataset (`clipforge.data.masks`)
        return MaskDataset(spec)
    split = parts[2] if len(parts) > 2 else None
    source = ShapesSource(
        task=task,
        seed=_int_option(options, "seed", 0, spec),
        image_size=_int_option(options, "image_size", 64, spec),
        size=_int_option(options, "n", 0, spec) or None,
        captions_per_image=_int_option(options, "captions", 2 if task == "captions" else 1, spec),
        split=split,
        shift=shift,
        variety=options.pop("variety", "classic"),
    )
    _no_extra(options, spec, "seed, image_size, n, captions, variety")
    return source


# -- scikit-learn digits --------------------------------------------------------------------------


@dataclass(frozen=True)
class DigitImages:
    """8x8 digits (0..16 ink) upscaled to RGB: dark ink on white, bicubic."""

    pixels: np.ndarray  # [N, 8, 8] in 0..16
    image_size: int

    def __len__(self) -> int:
        return len(self.pixels)

    def load(self, index: int) -> Image.Image:
        grey = (255 - self.pixels[index] * (255 / 16)).round().clip(0, 255).astype(np.uint8)
        small = Image.fromarray(grey, mode="L")
        return small.resize((self.image_size, self.image_size), Image.Resampling.BICUBIC).convert("RGB")


class DigitsSource(DatasetSource):
    """scikit-learn's 1,797 handwritten digits; fixed stratified 60/20/20 train/val/test splits."""

    classnames: list[str]
    templates: list[str]

    def __init__(self, names: str = "words", image_size: int = 64) -> None:
        try:
            # optional (`eval` extra): only the digits dataset needs scikit-learn
            from sklearn.datasets import load_digits
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ValueError("the digits dataset needs scikit-learn: pip install scikit-learn") from exc
        if names not in ("words", "numerals"):
            raise ValueError(f"digits class names must be 'words' or 'numerals', got {names!r}")
        data = load_digits()
        self.pixels = np.asarray(data.images, np.float64)
        self.targets = np.asarray(data.target, np.int64)
        self.image_size = image_size
        self.name = "digits" if names == "words" else "digits:numerals"
        self.classnames = list(DIGIT_WORDS) if names == "words" else [str(d) for d in range(10)]
        self.templates = list(DIGIT_TEMPLATES)
        self._split_idx = dict(zip(("train", "val", "test"), stratified_split(self.targets, (0.6, 0.2, 0.2), seed=0)))

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", "val", "test")

    def _load(self, split: str, shift: str | None, max_samples: int | None = None) -> EvalDataset:
        idx = self._split_idx[split]
        return EvalDataset(
            name=self.name,
            split=split,
            images=DigitImages(self.pixels[idx], self.image_size),
            fingerprint=digest("digits", self.pixels[idx], self.targets[idx], self.classnames, self.image_size),
            labels=self.targets[idx],
            classnames=list(self.classnames),
            templates=list(self.templates),
        )


def _digits_factory(spec: str) -> DigitsSource:
    parts, shift, options = parse_spec(spec)
    if shift is not None or len(parts) > 2:
        raise ValueError(f"dataset {spec!r}: expected digits[:words|:numerals]")
    source = DigitsSource(parts[1] if len(parts) > 1 else "words", _int_option(options, "image_size", 64, spec))
    _no_extra(options, spec, "image_size")
    return source


register_dataset("shapes", _shapes_factory)
register_dataset("digits", _digits_factory)

__all__: list[Any] = ["DigitsSource", "ShapesSource", "parse_spec"]
