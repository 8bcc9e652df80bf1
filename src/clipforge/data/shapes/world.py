"""The shapes world itself: a frozen configuration whose samples are pure functions of an index."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Iterator

import numpy as np
from PIL import Image, ImageFilter

from .attributes import (
    _CAPTION,
    _FINISH,
    _HELDOUT_STYLE_STREAM,
    _RENDER,
    _SCENE,
    _SHIFT,
    _SPLIT_ID,
    BACKGROUNDS,
    COLOUR_JITTER,
    COLOUR_NAMES,
    COLOURS,
    DUPLICATE_PROBABILITY,
    FILLED_PROBABILITY,
    POSITIONS,
    SHAPES,
    SHIFT_BACKGROUNDS,
    SHIFTS,
    SPLITS,
    STYLES,
    ObjectSpec,
    Sample,
    _layout,
    _pick,
    _weighted,
    choose_heldout,
)
from .captions import (
    COUNT_TEMPLATES,
    LIST_TEMPLATES,
    RELATION_TEMPLATES,
    SINGLE_POSITION_TEMPLATES,
    SINGLE_TEMPLATES,
    make_caption,
    vocabulary,
)
from .render import _paint, _sketch_masks, render_background, render_mask
from .styles import (
    RENDERERS,
    Variety,
    compress,
    draw_object,
    light,
    paint_field,
    resolve_variety,
    rich_background,
    stretch_and_turn,
)

__all__ = ["ShapesWorld"]


@dataclass(frozen=True)
class ShapesWorld:
    """Configuration of the shapes world; samples are pure functions of it and an index.

    ``shift`` (one of :data:`SHIFTS` or None) applies a distribution shift to every
    image; ``object_counts`` are the relative frequencies of 1, 2, 3 objects.
    ``variety`` (a name in :data:`~.styles.VARIETIES` or a :class:`~.styles.Variety`)
    chooses how scenes are drawn: ``"classic"`` (the default) is the original
    generator, pixel for pixel; ``"rich"`` varies renderers, backgrounds, geometry,
    lighting and compression. ``heldout_style_fraction`` of the variety's
    (renderer, background) pairs never occur outside the ``test_style`` split.
    Instances are immutable and picklable; derive variants with :meth:`with_`.
    """

    seed: int = 0
    image_size: int = 64
    split: str = "train"
    size: int = 10_000
    shift: str | None = None
    heldout_fraction: float = 0.2
    object_counts: tuple[float, ...] = (0.6, 0.25, 0.15)
    supersample: int = 4
    variety: str | Variety = "classic"
    heldout_style_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.shift is not None and self.shift not in SHIFTS:
            raise ValueError(f"shift must be None or one of {SHIFTS}, got {self.shift!r}")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError("seed must be a non-negative integer")
        if not 1 <= len(self.object_counts) <= 3 or min(self.object_counts) < 0 or sum(self.object_counts) <= 0:
            raise ValueError("object_counts must be 1-3 non-negative weights for 1, 2, 3 objects")
        if self.image_size < 8 or self.size < 0 or self.supersample < 1:
            raise ValueError("image_size must be >= 8, size >= 0 and supersample >= 1")
        object.__setattr__(self, "object_counts", tuple(float(w) for w in self.object_counts))
        resolve_variety(self.variety)  # refuse unknown names early
        if self.split == "test_compositional" and not self.heldout_pairs:
            raise ValueError("test_compositional needs heldout_fraction > 0")
        if self.split == "test_style" and not self.heldout_styles:
            raise ValueError(
                f"test_style needs held-out styles: a variety with several renderers and backgrounds "
                f"(e.g. variety='rich', not {self.variety_config.name!r}) and heldout_style_fraction > 0"
            )

    # -- derived configuration -------------------------------------------------

    @cached_property
    def variety_config(self) -> Variety:
        """The resolved :class:`~.styles.Variety` (drawing parameters) of this world."""
        return resolve_variety(self.variety)

    @property
    def variety_name(self) -> str:
        return self.variety_config.name

    @cached_property
    def heldout_pairs(self) -> frozenset[tuple[str, str]]:
        """(shape, colour) pairs never seen in train/val/test; only in test_compositional."""
        return choose_heldout(int(self.seed), self.heldout_fraction, SHAPES, COLOUR_NAMES)

    @cached_property
    def heldout_styles(self) -> frozenset[tuple[str, str]]:
        """(renderer, background) pairs never drawn in train/val/test; only in test_style.

        Fixed by the seed and the variety; empty for ``classic``.
        """
        v = self.variety_config
        if v.classic:
            return frozenset()
        return choose_heldout(
            int(self.seed),
            self.heldout_style_fraction,
            v.renderers,
            v.backgrounds,
            _HELDOUT_STYLE_STREAM,
            "heldout_style_fraction",
        )

    @cached_property
    def _pairs(self) -> tuple[tuple[str, str], ...]:
        if self.split == "test_compositional":
            return tuple(sorted(self.heldout_pairs))
        return tuple((s, c) for s in SHAPES for c in COLOUR_NAMES if (s, c) not in self.heldout_pairs)

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits this world's variety can generate (``test_style`` needs held-out styles)."""
        return tuple(s for s in SPLITS if s != "test_style" or self.heldout_styles)

    def with_(self, **changes: Any) -> ShapesWorld:
        """A copy with some fields changed, e.g. ``world.with_(split='val', shift='blur')``."""
        return replace(self, **changes)

    # -- sequence protocol -----------------------------------------------------

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Sample:
        if not -self.size <= index < self.size:
            raise IndexError(f"index {index} out of range for size {self.size}")
        return self.sample(index % self.size if index < 0 else index)

    def __iter__(self) -> Iterator[Sample]:
        return (self.sample(i) for i in range(self.size))

    # -- generation ------------------------------------------------------------

    def _rng(self, index: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([int(self.seed), _SPLIT_ID[self.split], int(index), stream])

    def objects(self, index: int) -> tuple[list[ObjectSpec], str]:
        """The scene at ``index`` (objects and background kind) without rendering it."""
        if index < 0:
            raise IndexError("index must be non-negative")
        if not self.variety_config.classic:
            return self._rich_objects(index)
        rng = self._rng(index, _SCENE)
        n = 1 if self.split == "test_compositional" else 1 + _weighted(rng, self.object_counts)
        background = _pick(rng, BACKGROUNDS)
        if n > 1 and rng.random() < DUPLICATE_PROBABILITY:
            pairs = [_pick(rng, self._pairs)] * n
        else:
            pairs = [_pick(rng, self._pairs) for _ in range(n)]
        objects = []
        for (shape, colour), (size, position, x, y, r) in zip(pairs, _layout(rng, n)):
            style = "filled" if rng.random() < FILLED_PROBABILITY else "outline"
            rotation = 0.0 if shape == "circle" else float(rng.uniform(-12, 12))
            jitter = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3)
            r_, g_, b_ = (int(v) for v in np.clip(np.array(COLOURS[colour]) + jitter, 0, 255))
            rgb = (r_, g_, b_)
            objects.append(ObjectSpec(shape, colour, size, position, style, x, y, r, rotation, rgb, renderer=style))
        if self.shift == "sketch":
            objects = [replace(o, style="outline", renderer="sketch") for o in objects]
        return objects, background

    def _rich_objects(self, index: int) -> tuple[list[ObjectSpec], str]:
        """A scene of a rich variety: renderers per object, one background, rotations and stretches."""
        v, held = self.variety_config, self.heldout_styles
        rng = self._rng(index, _SCENE)
        n = 1 if self.split == "test_compositional" else 1 + _weighted(rng, self.object_counts)
        if self.split == "test_style":
            first, background = _pick(rng, sorted(held))
            choices = [r for r, b in sorted(held) if b == background]
        else:
            first, background = None, _pick(rng, v.backgrounds)
            choices = [r for r in v.renderers if (r, background) not in held]
        if n > 1 and rng.random() < DUPLICATE_PROBABILITY:
            pairs = [_pick(rng, self._pairs)] * n
        else:
            pairs = [_pick(rng, self._pairs) for _ in range(n)]
        layout = _layout(rng, n, v.size_radius, v.separation, margin=1.25, spread=v.spread)
        objects = []
        for k, ((shape, colour), (size, position, x, y, r)) in enumerate(zip(pairs, layout)):
            family = "filled" if rng.random() < FILLED_PROBABILITY else "outline"
            in_family = [c for c in choices if RENDERERS[c] == family] or choices
            renderer = first if k == 0 and first is not None else _pick(rng, in_family)
            rotation, aspect = stretch_and_turn(rng, shape, v)
            jitter = rng.integers(-v.colour_jitter, v.colour_jitter + 1, 3)
            gain = 1 + rng.uniform(-v.brightness_jitter, v.brightness_jitter)
            r_, g_, b_ = (int(c) for c in np.clip((np.array(COLOURS[colour]) + jitter) * gain, 0, 255).round())
            style = RENDERERS[renderer]
            rgb = (r_, g_, b_)
            objects.append(ObjectSpec(shape, colour, size, position, style, x, y, r, rotation, rgb, aspect, renderer))
        if self.shift == "sketch":
            objects = [replace(o, style="outline", renderer="sketch") for o in objects]
        return objects, background

    def sample(self, index: int) -> Sample:
        """Generate sample ``index`` (any non-negative integer, independent of ``size``)."""
        objects, background = self.objects(index)
        scene_background = background
        if self.shift == "sketch":
            background = "paper"
        elif self.shift == "background":
            background = _pick(self._rng(index, _SHIFT), SHIFT_BACKGROUNDS)
        caption, info = make_caption(self._rng(index, _CAPTION), objects)
        pixels, masks = self._render(objects, background, self._rng(index, _RENDER))
        image = self._finish(pixels, index)
        attributes = {
            "seed": int(self.seed),
            "split": self.split,
            "index": int(index),
            "shift": self.shift,
            "variety": self.variety_config.name,
            "n_objects": len(objects),
            "heldout": any((o.shape, o.colour) in self.heldout_pairs for o in objects),
            "style_heldout": any((o.renderer, scene_background) in self.heldout_styles for o in objects),
            **info,
        }
        return Sample(image, caption, objects, background, attributes, masks)

    def _render(
        self, objects: list[ObjectSpec], background: str, rng: np.random.Generator
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        size, ss, v = self.image_size, self.supersample, self.variety_config
        if v.classic:
            pixels = render_background(rng, background, size)
        else:
            colours = np.array([o.rgb for o in objects], np.float32).reshape(-1, 3)
            pixels = rich_background(rng, background, size, ss, colours, v.min_contrast)
        masks = []
        for obj in objects:
            if self.shift == "sketch":
                stroke, ink = _sketch_masks(obj, size, ss)
                _paint(pixels, ink, (35, 35, 40))
                _paint(pixels, stroke, obj.rgb)
                masks.append(stroke)
            elif v.classic:
                mask = np.asarray(render_mask(obj, size, ss))
                _paint(pixels, mask, obj.rgb)
                masks.append(mask)
            else:
                mask, field = draw_object(obj, rng, size, ss)
                paint_field(pixels, mask, obj.rgb, field)
                masks.append(mask)
        return pixels, masks

    def _finish(self, pixels: np.ndarray, index: int) -> Image.Image:
        """Lighting and grain (rich varieties), the pixel shifts, JPEG artefacts (rich), blur."""
        v = self.variety_config
        finish = None if v.classic else self._rng(index, _FINISH)
        if finish is not None:
            pixels = light(pixels, finish, v)
        if self.shift == "noise":
            rng = self._rng(index, _SHIFT)
            pixels = pixels + rng.normal(0, 22, pixels.shape).astype(np.float32)
        image = Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), "RGB")
        if finish is not None:
            image = compress(image, finish, v)
        if self.shift == "blur":
            image = image.filter(ImageFilter.GaussianBlur(1.3 * self.image_size / 64))
        return image

    # -- documentation -----------------------------------------------------------

    def vocabulary(self, punctuation: bool = False) -> list[str]:
        """Same as the module-level :func:`vocabulary` (identical for all worlds)."""
        return vocabulary(punctuation)

    def describe(self) -> str:
        """Human-readable summary: attributes, splits, held-out pairs and styles, templates."""
        v = self.variety_config
        held = ", ".join(f"{c} {s}" for s, c in sorted(self.heldout_pairs))
        counts = ", ".join(f"{k + 1}: {w / sum(self.object_counts):.0%}" for k, w in enumerate(self.object_counts))
        n_templates = {
            "single": len(SINGLE_TEMPLATES) + len(SINGLE_POSITION_TEMPLATES),
            "relation": len(RELATION_TEMPLATES),
            "list": len(LIST_TEMPLATES),
            "count": len(COUNT_TEMPLATES),
        }
        if v.classic:
            drawing = [
                f"variety: {v.name} (styles: {', '.join(STYLES)})",
                f"backgrounds: {', '.join(BACKGROUNDS)} (shift-only: {', '.join(SHIFT_BACKGROUNDS)}, paper)",
            ]
        else:
            styles = ", ".join(f"{r} on {b}" for r, b in sorted(self.heldout_styles)) or "none"
            drawing = [
                f"variety: {v.name}; renderers: {', '.join(v.renderers)}",
                f"backgrounds: {', '.join(v.backgrounds)} (shift-only: {', '.join(SHIFT_BACKGROUNDS)}, paper)",
                f"held-out (renderer, background) styles ({len(self.heldout_styles)} of "
                f"{len(v.renderers) * len(v.backgrounds)}): {styles}",
            ]
        lines = [
            f"ShapesWorld(seed={self.seed}, split={self.split!r}, size={self.size}, "
            f"image_size={self.image_size}, shift={self.shift!r}, variety={v.name!r})",
            f"shapes ({len(SHAPES)}): {', '.join(SHAPES)}",
            f"colours ({len(COLOURS)}): {', '.join(COLOURS)}",
            f"sizes: small, large; positions: {', '.join(POSITIONS)}; styles: {', '.join(STYLES)}",
            *drawing,
            f"objects per image: {counts}"
            + (" (test_compositional: always 1)" if self.split == "test_compositional" else ""),
            f"held-out (shape, colour) pairs ({len(self.heldout_pairs)} of {len(SHAPES) * len(COLOURS)}): {held}",
            f"(shape, colour) pairs sampled in this split: {len(self._pairs)}",
            "caption templates: "
            + ", ".join(f"{kind} {n}" for kind, n in n_templates.items())
            + f"; vocabulary: {len(vocabulary())} words",
            f"splits: {', '.join(self.splits)}; shifts: {', '.join(SHIFTS)}",
        ]
        return "\n".join(lines)
