"""The shapes world: a deterministic, download-free source of image-caption pairs.

Every sample is a pure function of ``(seed, split, index)``: a per-index numpy
``Generator`` is seeded from those numbers, so any index can be generated in O(1),
in any order, in any worker process. Images show 1-3 coloured shapes on a muted
background; captions describe them with varied templates, synonyms, spatial
relations and counts. A seed-determined set of (shape, colour) pairs never occurs
in the training split, which makes compositional generalisation measurable.

See ``docs/shapes.md`` for an overview.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import tarfile
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = [
    "BACKGROUNDS",
    "COLOURS",
    "POSITIONS",
    "SHAPES",
    "SHIFTS",
    "SHIFT_BACKGROUNDS",
    "SIZES",
    "SPLITS",
    "STYLES",
    "TASKS",
    "ObjectSpec",
    "Sample",
    "ShapesClassification",
    "ShapesWorld",
    "relation_between",
    "vocabulary",
    "write_csv_dataset",
    "label_of",
    "write_webdataset",
]

# ---------------------------------------------------------------------------
# The world's attributes
# ---------------------------------------------------------------------------

SHAPES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "hexagon",
    "cross",
    "heart",
    "diamond",
)
#: Saturated object colours; backgrounds are muted greys so these stay distinct.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 165, 55),
    "blue": (35, 80, 225),
    "yellow": (245, 215, 35),
    "purple": (150, 55, 200),
    "orange": (250, 140, 25),
    "white": (250, 250, 250),
    "black": (20, 20, 20),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
SIZES: tuple[str, ...] = ("small", "large")
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "centre")
STYLES: tuple[str, ...] = ("filled", "outline")
BACKGROUNDS: tuple[str, ...] = ("plain", "noise", "gradient")
#: Backgrounds used only by the ``background`` distribution shift.
SHIFT_BACKGROUNDS: tuple[str, ...] = ("checkerboard", "stripes")
SHIFTS: tuple[str, ...] = ("noise", "blur", "sketch", "background")
SPLITS: tuple[str, ...] = ("train", "val", "test", "test_compositional")
TASKS: tuple[str, ...] = ("shape", "colour", "shape_colour", "size", "position", "style")

#: Radius range (fraction of the image side) of each size class.
SIZE_RADIUS: dict[str, tuple[float, float]] = {"small": (0.09, 0.11), "large": (0.17, 0.20)}
OUTLINE_WIDTH = 0.04  # max stroke width of outline objects, fraction of the image side
OUTLINE_RATIO = 0.25  # stroke width relative to the radius (thinner for small objects)
FILLED_PROBABILITY = 0.65
DUPLICATE_PROBABILITY = 0.25  # multi-object scenes whose objects share shape and colour
COLOUR_JITTER = 10  # +- per RGB channel, so colours are not pixel-exact constants

_SPLIT_ID = {name: k for k, name in enumerate(SPLITS)}
_SCENE, _CAPTION, _RENDER, _SHIFT = 0, 1, 2, 3  # independent random streams per index
_HELDOUT_STREAM = 7_919  # stream id used (with the seed only) to choose held-out pairs

# ---------------------------------------------------------------------------
# Caption language
# ---------------------------------------------------------------------------

SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
STYLE_WORDS = {"filled": ("filled", "solid"), "outline": ("outlined", "hollow")}
COLOUR_WORDS = {c: (c,) for c in COLOUR_NAMES} | {"purple": ("purple", "violet")}
SHAPE_WORDS = {s: (s,) for s in SHAPES} | {
    "square": ("square", "box"),
    "diamond": ("diamond", "rhombus"),
    "cross": ("cross", "plus"),
}
SYNONYM_PROBABILITY = 0.2  # chance of a non-canonical synonym (colour or shape word)
PLURALS = {"box": "boxes", "cross": "crosses", "plus": "pluses", "rhombus": "rhombuses"}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}
POSITION_PHRASES = {
    "left": ("on the left", "at the left", "on the left side"),
    "right": ("on the right", "at the right", "on the right side"),
    "top": ("at the top", "near the top", "on the top side"),
    "bottom": ("at the bottom", "near the bottom", "on the bottom side"),
    "centre": ("in the centre", "in the middle", "at the centre"),
}
POSITION_SUFFIXES = ("", "", "", " of the image", " of the picture")
RELATION_PHRASES = {
    "left_of": ("to the left of", "left of", "on the left of"),
    "right_of": ("to the right of", "right of", "on the right of"),
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
}
SINGLE_TEMPLATES = (
    "{np}.",
    "a photo of {np}.",
    "an image of {np}.",
    "a picture of {np}.",
    "there is {np}.",
    "a photo showing {np}.",
)
SINGLE_POSITION_TEMPLATES = (
    "{np} {pos}.",
    "a photo of {np} {pos}.",
    "there is {np} {pos}.",
    "{pos} there is {np}.",
    "an image of {np} {pos}.",
    "{np}, {pos}.",
)
RELATION_TEMPLATES = (
    "{a} {rel} {b}.",
    "a photo of {a} {rel} {b}.",
    "{a} is {rel} {b}.",
    "there is {a} {rel} {b}.",
)
LIST_TEMPLATES = (
    "{list}.",
    "a photo of {list}.",
    "an image with {list}.",
    "{n} shapes: {list}.",
)
COUNT_TEMPLATES = ("{list}.", "a photo of {list}.", "an image with {list}.", "there are {list}.")

#: Zero-shot prompt templates per classification task (only vocabulary words).
TASK_TEMPLATES: dict[str, tuple[str, ...]] = {
    "shape": ("a photo of a {}.", "a {}.", "there is a {}.", "an image of a {}.", "a picture of a {}."),
    "colour": ("a photo of the {} shape.", "the {} shape.", "a shape in {}.", "an image of the {} shape."),
    "shape_colour": ("a photo of the {}.", "the {}.", "an image of the {}.", "a picture of the {}."),
    "size": ("a photo of a {} shape.", "a {} shape.", "there is a {} shape.", "an image of a {} shape."),
    "position": ("a shape {}.", "a photo of a shape {}.", "there is a shape {}.", "an image of a shape {}."),
    "style": ("a photo of the {} shape.", "the {} shape.", "an image of the {} shape."),
}

# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectSpec:
    """One rendered object: its categorical attributes and exact geometry.

    ``x``, ``y`` (centre) and ``radius`` are fractions of the image side, with
    y growing downwards; ``rgb`` is the jittered colour actually painted.
    """

    shape: str
    colour: str
    size: str
    position: str
    style: str
    x: float
    y: float
    radius: float
    rotation: float
    rgb: tuple[int, int, int]


@dataclass
class Sample:
    """An image, its caption and the records that make the caption checkable.

    ``masks`` holds one uint8 coverage mask (H x W, 255 = fully covered) per
    object, before occlusion by later objects.
    """

    image: Image.Image
    caption: str
    objects: list[ObjectSpec]
    background: str
    attributes: dict[str, Any]
    masks: list[np.ndarray] = field(default_factory=list, repr=False)


# ---------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------


def _centred(points: np.ndarray) -> np.ndarray:
    """Shift a polygon so that its area centroid is at the origin."""
    x, y = points[:, 0], points[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    area = cross.sum() / 2
    cx = ((x + xn) * cross).sum() / (6 * area)
    cy = ((y + yn) * cross).sum() / (6 * area)
    return points - np.array([cx, cy])


def _regular(n: int, phase_deg: float, radius: float = 1.0) -> np.ndarray:
    angles = np.deg2rad(phase_deg + 360.0 * np.arange(n) / n)
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    angles = np.deg2rad(-90 + 180.0 * np.arange(2 * points) / points)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _heart(n: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    return np.stack([x, -y], axis=1) / 16.5  # image y grows downwards


def _cross(arm: float = 0.32, extent: float = 0.92) -> np.ndarray:
    a, e = arm, extent
    return np.array(
        [(-a, -e), (a, -e), (a, -a), (e, -a), (e, a), (a, a), (a, e), (-a, e), (-a, a), (-e, a), (-e, -a), (-a, -a)]
    )


#: Unit polygons (bounding radius ~1, area centroid at the origin, y down).
SHAPE_POLYGONS: dict[str, np.ndarray] = {
    name: _centred(poly.astype(np.float64))
    for name, poly in {
        "circle": _regular(64, 0.0),
        "square": np.array([(-0.78, -0.78), (0.78, -0.78), (0.78, 0.78), (-0.78, 0.78)]),
        "triangle": _regular(3, -90.0, 1.05),
        "star": _star(),
        "hexagon": _regular(6, 0.0),
        "cross": _cross(),
        "heart": _heart(),
        "diamond": np.array([(0.0, -1.0), (0.68, 0.0), (0.0, 1.0), (-0.68, 0.0)]),
    }.items()
}


def relation_between(a: ObjectSpec, b: ObjectSpec) -> str | None:
    """Spatial relation of ``a`` with respect to ``b``, or None if not clear-cut.

    One of ``left_of``, ``right_of``, ``above``, ``below``; requires the dominant
    axis offset to be >= 0.12 of the image and 1.5x the other axis offset.
    """
    dx, dy = a.x - b.x, a.y - b.y
    if abs(dx) >= 0.12 and abs(dx) >= 1.5 * abs(dy):
        return "left_of" if dx < 0 else "right_of"
    if abs(dy) >= 0.12 and abs(dy) >= 1.5 * abs(dx):
        return "above" if dy < 0 else "below"
    return None


def _region_point(rng: np.random.Generator, position: str, r: float) -> tuple[float, float]:
    """Sample a centre inside ``position``'s region keeping the object in frame."""
    lo, hi = r * 1.1 + 0.02, 1 - r * 1.1 - 0.02
    if position == "centre":
        return rng.uniform(0.45, 0.55), rng.uniform(0.45, 0.55)
    near = rng.uniform(lo, max(lo, 0.34))
    far = rng.uniform(min(hi, 0.66), hi)
    across = rng.uniform(0.42, 0.58)
    return {
        "left": (near, across),
        "right": (far, across),
        "top": (across, near),
        "bottom": (across, far),
    }[position]


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def _pick(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    """Uniform choice (much faster than ``rng.choice`` for short Python tuples)."""
    return options[int(rng.random() * len(options))]


def _weighted(rng: np.random.Generator, weights: Sequence[float]) -> int:
    u, total = rng.random() * sum(weights), 0.0
    for k, w in enumerate(weights):
        total += w
        if u < total:
            return k
    return len(weights) - 1


def _words(text: str) -> list[str]:
    """The tokenisation under which :func:`vocabulary` is complete."""
    return re.findall(r"[a-z]+", text.lower())


def _choose_heldout(seed: int, fraction: float) -> frozenset[tuple[str, str]]:
    """Seed-determined (shape, colour) pairs withheld from training.

    At most ``ceil(n / 8)`` pairs per shape and per colour, so every shape and
    every colour still occurs in training with most partners.
    """
    pairs = [(s, c) for s in SHAPES for c in COLOUR_NAMES]
    n = int(round(fraction * len(pairs)))
    if n == 0:
        return frozenset()
    cap = math.ceil(n / min(len(SHAPES), len(COLOUR_NAMES)))
    if cap > min(len(SHAPES), len(COLOUR_NAMES)) - 1:
        raise ValueError(f"heldout_fraction={fraction} leaves some shape or colour unseen")
    rng = np.random.default_rng([seed, _HELDOUT_STREAM])
    while True:
        chosen: list[tuple[str, str]] = []
        per_shape: dict[str, int] = {}
        per_colour: dict[str, int] = {}
        for k in rng.permutation(len(pairs)):
            s, c = pairs[k]
            if per_shape.get(s, 0) < cap and per_colour.get(c, 0) < cap:
                chosen.append((s, c))
                per_shape[s] = per_shape.get(s, 0) + 1
                per_colour[c] = per_colour.get(c, 0) + 1
                if len(chosen) == n:
                    return frozenset(chosen)


# ---------------------------------------------------------------------------
# Captions
# ---------------------------------------------------------------------------


def _article(words: list[str]) -> list[str]:
    """Turn a leading 'a' into 'an' before a vowel sound."""
    if len(words) > 1 and words[0] == "a" and words[1][0] in "aeiou":
        return ["an", *words[1:]]
    return words


def _noun_phrase(
    rng: np.random.Generator,
    obj: ObjectSpec,
    *,
    count: int = 1,
    determiners: Sequence[str] = ("a", "a", "a", "a", "one", "the"),
    size_p: float = 0.7,
    style_p: float = 0.4,
    generic_p: float = 0.0,
) -> str:
    """Describe one object (or ``count`` identical ones) with varied wording."""
    size = _pick(rng, SIZE_WORDS[obj.size]) if rng.random() < size_p else None
    style = _pick(rng, STYLE_WORDS[obj.style]) if rng.random() < style_p else None
    colour = _synonym(rng, COLOUR_WORDS[obj.colour])
    noun = "shape" if rng.random() < generic_p else _synonym(rng, SHAPE_WORDS[obj.shape])
    if count > 1:
        noun = PLURALS.get(noun, noun + "s")
    form = rng.random()
    if form < 0.15:
        body = [size, style, noun, "in", colour]
    elif form < 0.25 and size is not None:
        body = [style, colour, noun, "that", "is" if count == 1 else "are", size]
    elif form < 0.35 and size is not None and style is not None:
        body = [style, size, colour, noun]
    else:
        body = [size, style, colour, noun]
    det = NUMBER_WORDS[count] if count > 1 else _pick(rng, determiners)
    return " ".join(_article([det, *(w for w in body if w is not None)]))


def _synonym(rng: np.random.Generator, options: Sequence[str]) -> str:
    if len(options) > 1 and rng.random() < SYNONYM_PROBABILITY:
        return _pick(rng, options[1:])
    return options[0]


def _position_phrase(rng: np.random.Generator, position: str) -> str:
    return _pick(rng, POSITION_PHRASES[position]) + _pick(rng, POSITION_SUFFIXES)


def _dets_for(template: str) -> tuple[str, ...]:
    """Determiners that read naturally in a template ('there is the ...' does not)."""
    return ("a", "a", "a", "one") if "there is" in template else ("a", "a", "a", "a", "one", "the")


def _join(phrases: list[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _single_caption(rng: np.random.Generator, obj: ObjectSpec) -> tuple[str, dict[str, Any]]:
    with_pos = rng.random() < 0.5
    template = _pick(rng, SINGLE_POSITION_TEMPLATES if with_pos else SINGLE_TEMPLATES)
    np_ = _noun_phrase(rng, obj, generic_p=0.1, determiners=_dets_for(template))
    pos = _position_phrase(rng, obj.position) if with_pos else ""
    return template.format(np=np_, pos=pos), {
        "caption_kind": "single",
        "stated_positions": [0] if with_pos else [],
        "relations": [],
    }


def _count_caption(rng: np.random.Generator, objects: list[ObjectSpec]) -> tuple[str, dict[str, Any]]:
    groups: dict[tuple[str, str], list[ObjectSpec]] = {}
    for obj in objects:
        groups.setdefault((obj.shape, obj.colour), []).append(obj)
    phrases = []
    for members in sorted(groups.values(), key=len, reverse=True):
        same_size = len({m.size for m in members}) == 1
        same_style = len({m.style for m in members}) == 1
        phrases.append(
            _noun_phrase(
                rng,
                members[0],
                count=len(members),
                size_p=0.6 if same_size else 0.0,
                style_p=0.3 if same_style else 0.0,
                determiners=("a", "one"),
            )
        )
    text = _pick(rng, COUNT_TEMPLATES).format(list=_join(phrases))
    return text, {"caption_kind": "count", "stated_positions": [], "relations": []}


def _list_caption(rng: np.random.Generator, objects: list[ObjectSpec]) -> tuple[str, dict[str, Any]]:
    order = [int(k) for k in rng.permutation(len(objects))]
    with_pos = rng.random() < 0.5
    phrases = []
    for k in order:
        phrase = _noun_phrase(rng, objects[k], determiners=("a", "a", "one"))
        if with_pos:
            phrase += " " + _position_phrase(rng, objects[k].position)
        phrases.append(phrase)
    text = _pick(rng, LIST_TEMPLATES).format(list=_join(phrases), n=NUMBER_WORDS[len(objects)])
    return text, {"caption_kind": "list", "stated_positions": order if with_pos else [], "relations": []}


def _relation_caption(rng: np.random.Generator, objects: list[ObjectSpec]) -> tuple[str, dict[str, Any]] | None:
    order = [int(k) for k in rng.permutation(len(objects))]
    a, b = order[0], order[1]
    relation = relation_between(objects[a], objects[b])
    if relation is None:
        return None
    dets = ("a", "a", "one")
    text = _pick(rng, RELATION_TEMPLATES).format(
        a=_noun_phrase(rng, objects[a], determiners=dets),
        rel=_pick(rng, RELATION_PHRASES[relation]),
        b=_noun_phrase(rng, objects[b], determiners=dets),
    )
    stated = []
    if len(objects) == 3:
        c = order[2]
        extra = _noun_phrase(rng, objects[c], determiners=dets)
        if rng.random() < 0.5:
            extra += " " + _position_phrase(rng, objects[c].position)
            stated = [c]
        text = text[:-1] + ", and " + extra + "."
    return text, {"caption_kind": "relation", "stated_positions": stated, "relations": [(a, relation, b)]}


def make_caption(rng: np.random.Generator, objects: list[ObjectSpec]) -> tuple[str, dict[str, Any]]:
    """Caption a scene; also return which positions/relations the caption states."""
    if len(objects) == 1:
        return _single_caption(rng, objects[0])
    if len({(o.shape, o.colour) for o in objects}) < len(objects):
        return _count_caption(rng, objects)
    if rng.random() < 0.5:
        result = _relation_caption(rng, objects)
        if result is not None:
            return result
    return _list_caption(rng, objects)


def _template_strings() -> list[str]:
    strings: list[str] = [
        *SINGLE_TEMPLATES,
        *SINGLE_POSITION_TEMPLATES,
        *RELATION_TEMPLATES,
        *LIST_TEMPLATES,
        *COUNT_TEMPLATES,
        "shape shapes that is are in and",
    ]  # words added outside templates
    strings += [t for ts in TASK_TEMPLATES.values() for t in ts]
    return strings


PUNCTUATION: tuple[str, ...] = (",", ".", ":")


def vocabulary(punctuation: bool = False) -> list[str]:
    """Every word a caption or prompt template can contain (sorted, lowercase).

    Words are ``re.findall(r"[a-z]+", text.lower())``; captions otherwise contain
    only spaces and :data:`PUNCTUATION`, which ``punctuation=True`` appends (so a
    word-level tokenizer that splits off punctuation is complete too). Covers
    captions of every split and shift plus the class names and prompt templates
    of :class:`ShapesClassification`.
    """
    pieces: list[str] = _template_strings()
    for table in (SIZE_WORDS, STYLE_WORDS, COLOUR_WORDS, SHAPE_WORDS, POSITION_PHRASES, RELATION_PHRASES):
        pieces += [w for options in table.values() for w in options]
    pieces += [PLURALS.get(w, w + "s") for options in SHAPE_WORDS.values() for w in options]
    pieces += [*NUMBER_WORDS.values(), *POSITION_SUFFIXES, "a an one the"]
    pieces += [name for task in TASKS for name in _task_classes(task)[1]]
    words = sorted({w for piece in pieces for w in _words(piece)})
    return words + list(PUNCTUATION) if punctuation else words


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


def _muted(rng: np.random.Generator, lo: float = 95, hi: float = 165) -> np.ndarray:
    """A low-chroma grey-ish tone that every object colour stands out against."""
    return np.clip(rng.uniform(lo, hi) + rng.uniform(-12, 12, 3), 0, 255).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int, sigma: float) -> np.ndarray:
    """Low-frequency, nearly grey noise (little chroma, so object colours stay distinct)."""
    grey = rng.normal(0, sigma, (cells, cells, 1)) + rng.normal(0, sigma / 4, (cells, cells, 3))
    coarse = np.clip(128 + grey, 0, 255).astype(np.uint8)
    up = Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(up, dtype=np.float32) - 128


def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    return c[None, :], c[:, None]  # x (row vector), y (column vector)


def render_background(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    """Background pixels (H x W x 3, float32 in 0..255) of a named kind."""
    if kind == "plain":
        return np.broadcast_to(_muted(rng), (size, size, 3)).copy()
    if kind == "noise":
        base = _muted(rng, 105, 155)
        fine = rng.normal(0, 6, (size, size, 1)).astype(np.float32)
        return np.clip(base + _smooth_noise(rng, size, 8, 16) + fine, 0, 255)
    if kind == "paper":  # sketch shift: warm off-white
        tone = np.float32(rng.uniform(238, 250)) + np.array([3, 1, -3], np.float32)
        return np.broadcast_to(np.clip(tone, 0, 255), (size, size, 3)).copy()
    x, y = _coords(size)
    if kind == "gradient":
        a, b = _muted(rng), _muted(rng)
        theta = rng.uniform(0, 2 * np.pi)
        t = (np.cos(theta) * (x - 0.5) + np.sin(theta) * (y - 0.5)) / math.sqrt(0.5) + 0.5
        return a + (b - a) * np.clip(t, 0, 1)[..., None]
    a = _muted(rng, 90, 125)  # shift-only backgrounds: two muted tones
    b = a + np.float32(rng.uniform(35, 50))
    if kind == "checkerboard":
        cells = _pick(rng, (4, 6, 8))
        on = ((np.floor(x * cells) + np.floor(y * cells)) % 2)[..., None]
    elif kind == "stripes":
        theta = np.deg2rad(_pick(rng, (0, 45, 90, 135)))
        period = _pick(rng, (6, 8, 10))
        on = (np.floor((np.cos(theta) * x + np.sin(theta) * y) * period * 2) % 2)[..., None]
    else:
        raise ValueError(f"unknown background {kind!r}")
    return np.where(on > 0, b, a).astype(np.float32)


def _polygon(obj: ObjectSpec, scale: float) -> list[tuple[float, float]]:
    theta = math.radians(obj.rotation)
    rot = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    pts = SHAPE_POLYGONS[obj.shape] @ rot * (obj.radius * scale) + np.array([obj.x, obj.y]) * scale
    return [tuple(p) for p in pts.tolist()]


def render_mask(obj: ObjectSpec, size: int, supersample: int = 4, *, stroke: float | None = None) -> Image.Image:
    """Anti-aliased coverage mask ('L', size x size) of one object.

    Drawn at ``supersample`` x resolution and box-reduced, which integrates pixel
    coverage exactly. ``stroke`` (fraction of the side) forces an outline.
    """
    big = size * supersample
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    points = _polygon(obj, big)
    if stroke is None and obj.style == "filled":
        draw.polygon(points, fill=255)
    else:
        stroke = stroke or min(OUTLINE_WIDTH, OUTLINE_RATIO * obj.radius)
        width = max(1, round(stroke * big))
        draw.polygon(points, outline=255, width=width)
    return canvas.reduce(supersample) if supersample > 1 else canvas


def _paint(pixels: np.ndarray, mask: np.ndarray, rgb: Sequence[float]) -> None:
    """Alpha-blend ``rgb`` into ``pixels`` (in place) inside the mask's bounding box."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return
    box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    alpha = mask[box].astype(np.float32)[..., None] * np.float32(1 / 255)
    pixels[box] += alpha * (np.asarray(rgb, dtype=np.float32) - pixels[box])


def _sketch_masks(obj: ObjectSpec, size: int, supersample: int) -> tuple[np.ndarray, np.ndarray]:
    """Coloured stroke mask and a dark ink edge around it (sketch shift).

    The ink edge (stroke dilated by ~1 px) keeps white strokes visible on paper.
    """
    stroke = render_mask(obj, size, supersample, stroke=0.03)
    edge = 2 * max(1, round(size / 64)) + 1
    return np.asarray(stroke), np.asarray(stroke.filter(ImageFilter.MaxFilter(edge)))


# ---------------------------------------------------------------------------
# The world
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ShapesWorld:
    """Configuration of the shapes world; samples are pure functions of it and an index.

    ``shift`` (one of :data:`SHIFTS` or None) applies a distribution shift to every
    image; ``object_counts`` are the relative frequencies of 1, 2, 3 objects.
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
        if self.split == "test_compositional" and not self.heldout_pairs:
            raise ValueError("test_compositional needs heldout_fraction > 0")

    # -- derived configuration -------------------------------------------------

    @cached_property
    def heldout_pairs(self) -> frozenset[tuple[str, str]]:
        """(shape, colour) pairs never seen in train/val/test; only in test_compositional."""
        return _choose_heldout(int(self.seed), self.heldout_fraction)

    @cached_property
    def _pairs(self) -> tuple[tuple[str, str], ...]:
        if self.split == "test_compositional":
            return tuple(sorted(self.heldout_pairs))
        return tuple((s, c) for s in SHAPES for c in COLOUR_NAMES if (s, c) not in self.heldout_pairs)

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
            objects.append(ObjectSpec(shape, colour, size, position, style, x, y, r, rotation, rgb))
        if self.shift == "sketch":
            objects = [replace(o, style="outline") for o in objects]
        return objects, background

    def sample(self, index: int) -> Sample:
        """Generate sample ``index`` (any non-negative integer, independent of ``size``)."""
        objects, background = self.objects(index)
        if self.shift == "sketch":
            background = "paper"
        elif self.shift == "background":
            background = _pick(self._rng(index, _SHIFT), SHIFT_BACKGROUNDS)
        caption, info = make_caption(self._rng(index, _CAPTION), objects)
        pixels, masks = self._render(objects, background, self._rng(index, _RENDER))
        image = self._apply_pixel_shift(pixels, index)
        attributes = {
            "seed": int(self.seed),
            "split": self.split,
            "index": int(index),
            "shift": self.shift,
            "n_objects": len(objects),
            "heldout": any((o.shape, o.colour) in self.heldout_pairs for o in objects),
            **info,
        }
        return Sample(image, caption, objects, background, attributes, masks)

    def _render(
        self, objects: list[ObjectSpec], background: str, rng: np.random.Generator
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        size, ss = self.image_size, self.supersample
        pixels = render_background(rng, background, size)
        masks = []
        for obj in objects:
            if self.shift == "sketch":
                stroke, ink = _sketch_masks(obj, size, ss)
                _paint(pixels, ink, (35, 35, 40))
                _paint(pixels, stroke, obj.rgb)
                masks.append(stroke)
            else:
                mask = np.asarray(render_mask(obj, size, ss))
                _paint(pixels, mask, obj.rgb)
                masks.append(mask)
        return pixels, masks

    def _apply_pixel_shift(self, pixels: np.ndarray, index: int) -> Image.Image:
        if self.shift == "noise":
            rng = self._rng(index, _SHIFT)
            pixels = pixels + rng.normal(0, 22, pixels.shape).astype(np.float32)
        image = Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), "RGB")
        if self.shift == "blur":
            image = image.filter(ImageFilter.GaussianBlur(1.3 * self.image_size / 64))
        return image

    # -- documentation -----------------------------------------------------------

    def vocabulary(self, punctuation: bool = False) -> list[str]:
        """Same as the module-level :func:`vocabulary` (identical for all worlds)."""
        return vocabulary(punctuation)

    def describe(self) -> str:
        """Human-readable summary: attributes, splits, held-out pairs, templates."""
        held = ", ".join(f"{c} {s}" for s, c in sorted(self.heldout_pairs))
        counts = ", ".join(f"{k + 1}: {w / sum(self.object_counts):.0%}" for k, w in enumerate(self.object_counts))
        n_templates = {
            "single": len(SINGLE_TEMPLATES) + len(SINGLE_POSITION_TEMPLATES),
            "relation": len(RELATION_TEMPLATES),
            "list": len(LIST_TEMPLATES),
            "count": len(COUNT_TEMPLATES),
        }
        lines = [
            f"ShapesWorld(seed={self.seed}, split={self.split!r}, size={self.size}, "
            f"image_size={self.image_size}, shift={self.shift!r})",
            f"shapes ({len(SHAPES)}): {', '.join(SHAPES)}",
            f"colours ({len(COLOURS)}): {', '.join(COLOURS)}",
            f"sizes: {', '.join(SIZES)}; positions: {', '.join(POSITIONS)}; styles: {', '.join(STYLES)}",
            f"backgrounds: {', '.join(BACKGROUNDS)} (shift-only: {', '.join(SHIFT_BACKGROUNDS)}, paper)",
            f"objects per image: {counts}"
            + (" (test_compositional: always 1)" if self.split == "test_compositional" else ""),
            f"held-out (shape, colour) pairs ({len(self.heldout_pairs)} of {len(SHAPES) * len(COLOURS)}): {held}",
            f"(shape, colour) pairs sampled in this split: {len(self._pairs)}",
            "caption templates: "
            + ", ".join(f"{k} {v}" for k, v in n_templates.items())
            + f"; vocabulary: {len(vocabulary())} words",
            f"splits: {', '.join(SPLITS)}; shifts: {', '.join(SHIFTS)}",
        ]
        return "\n".join(lines)


def _layout(rng: np.random.Generator, n: int) -> list[tuple[str, str, float, float, float]]:
    """Sizes, positions and centres for ``n`` objects that overlap little.

    Positions are distinct regions; centres are at least 0.92 x the sum of the
    two radii apart. Falls back to all-small objects if a layout is hard to fit.
    """
    for attempt in range(200):
        sizes = [_pick(rng, SIZES) for _ in range(n)] if attempt < 20 else ["small"] * n
        if n == 3 and sizes.count("large") > 1:
            continue
        positions = [POSITIONS[int(k)] for k in rng.permutation(len(POSITIONS))[:n]]
        radii = [float(rng.uniform(*SIZE_RADIUS[s])) for s in sizes]
        centres = [_region_point(rng, p, r) for p, r in zip(positions, radii)]
        if all(math.dist(centres[i], centres[j]) >= 0.92 * (radii[i] + radii[j]) for i in range(n) for j in range(i)):
            return [(s, p, float(x), float(y), r) for s, p, (x, y), r in zip(sizes, positions, centres, radii)]
    raise RuntimeError("could not lay out objects")  # pragma: no cover - practically unreachable


# ---------------------------------------------------------------------------
# Classification views
# ---------------------------------------------------------------------------


def _task_classes(task: str) -> tuple[list[str], list[str]]:
    """(labels, classnames) of a task: canonical values and prompt-ready names."""
    if task == "shape":
        return list(SHAPES), list(SHAPES)
    if task == "colour":
        return list(COLOUR_NAMES), list(COLOUR_NAMES)
    if task == "shape_colour":
        names = [f"{c} {s}" for s in SHAPES for c in COLOUR_NAMES]
        return names, names
    if task == "size":
        return list(SIZES), list(SIZES)
    if task == "position":
        return list(POSITIONS), [POSITION_PHRASES[p][0] for p in POSITIONS]
    if task == "style":
        return list(STYLES), ["filled", "outlined"]
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def label_of(task: str, obj: ObjectSpec) -> int:
    """Class index of an object under ``task``."""
    if task == "shape_colour":
        return SHAPES.index(obj.shape) * len(COLOUR_NAMES) + COLOUR_NAMES.index(obj.colour)
    labels, _ = _task_classes(task)
    return labels.index(getattr(obj, task))


class ShapesClassification:
    """Single-object images labelled by one attribute, for zero-shot and probes.

    ``world_or_params`` is a :class:`ShapesWorld` or a mapping of its fields.
    ``split``, ``size`` and ``shift`` override the world's (``shift=None`` keeps
    it). Items are ``(image, label_index)``; ``transform`` is applied to images.
    The ``sketch`` shift turns every object into an outline, so it is refused
    for the ``style`` task.
    """

    def __init__(
        self,
        world_or_params: ShapesWorld | Mapping[str, Any] | None = None,
        task: str = "shape",
        split: str | None = None,
        size: int | None = None,
        shift: str | None = None,
        transform: Callable[[Image.Image], Any] | None = None,
    ) -> None:
        base = world_or_params if isinstance(world_or_params, ShapesWorld) else ShapesWorld(**(world_or_params or {}))
        self.world = base.with_(
            split=split or base.split,
            size=base.size if size is None else size,
            shift=shift if shift is not None else base.shift,
            object_counts=(1.0,),
        )
        if task == "style" and self.world.shift == "sketch":
            raise ValueError("the sketch shift draws every object as an outline; the style label would change")
        self.task = task
        self.labels, self.classnames = _task_classes(task)
        self.templates: tuple[str, ...] = TASK_TEMPLATES[task]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.world)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        sample = self.world[index]
        image = self.transform(sample.image) if self.transform is not None else sample.image
        return image, label_of(self.task, sample.objects[0])

    def target(self, index: int) -> int:
        """Label of ``index`` without rendering the image."""
        return label_of(self.task, self.world.objects(index)[0][0])

    @property
    def targets(self) -> list[int]:
        """All labels (cheap: no rendering)."""
        return [self.target(i) for i in range(len(self))]

    def prompts(self, classname: str) -> list[str]:
        """The prompt templates filled with one class name."""
        return [t.format(classname) for t in self.templates]


# ---------------------------------------------------------------------------
# Materialising to disk
# ---------------------------------------------------------------------------

CSV_COLUMNS = (
    "filepath",
    "caption",
    "index",
    "split",
    "seed",
    "shift",
    "n_objects",
    "shapes",
    "colours",
    "sizes",
    "positions",
    "styles",
    "background",
    "heldout",
)


def _flat_record(sample: Sample) -> dict[str, Any]:
    """Scalar attribute columns; multi-object values are joined with ';'."""
    a, objs = sample.attributes, sample.objects
    return {
        "caption": sample.caption,
        "index": a["index"],
        "split": a["split"],
        "seed": a["seed"],
        "shift": a["shift"] or "",
        "n_objects": a["n_objects"],
        "shapes": ";".join(o.shape for o in objs),
        "colours": ";".join(o.colour for o in objs),
        "sizes": ";".join(o.size for o in objs),
        "positions": ";".join(o.position for o in objs),
        "styles": ";".join(o.style for o in objs),
        "background": sample.background,
        "heldout": int(a["heldout"]),
    }


def _json_record(sample: Sample) -> dict[str, Any]:
    return {
        "caption": sample.caption,
        "background": sample.background,
        "objects": [asdict(o) for o in sample.objects],
        "attributes": sample.attributes,
    }


def _key_width(n: int) -> int:
    return max(6, len(str(max(n - 1, 0))))


def write_csv_dataset(world: ShapesWorld, out_dir: str | Path, n: int | None = None) -> Path:
    """Write ``images/000000.png ...`` and ``captions.csv``; return the CSV path.

    ``filepath`` is relative to ``out_dir``; other columns are in :data:`CSV_COLUMNS`.
    """
    n = len(world) if n is None else n
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    width = _key_width(n)
    csv_path = out / "captions.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for i in range(n):
            sample = world.sample(i)
            rel = f"images/{i:0{width}d}.png"
            sample.image.save(out / rel)
            writer.writerow({"filepath": rel, **_flat_record(sample)})
    return csv_path


def _add_member(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(payload), 0o644, 0  # fixed mtime: reproducible bytes
    tar.addfile(info, io.BytesIO(payload))


def write_webdataset(
    world: ShapesWorld, out_dir: str | Path, n: int | None = None, shard_size: int = 1000
) -> list[Path]:
    """Write ``shard-000000.tar ...`` with ``KEY.png``/``KEY.txt``/``KEY.json`` members.

    Keys are zero-padded sample indices; returns the shard paths in order.
    """
    if shard_size < 1:
        raise ValueError("shard_size must be >= 1")
    n = len(world) if n is None else n
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    width, paths = _key_width(n), []
    for shard, start in enumerate(range(0, n, shard_size)):
        path = out / f"shard-{shard:06d}.tar"
        with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(start, min(n, start + shard_size)):
                sample, key = world.sample(i), f"{i:0{width}d}"
                png = io.BytesIO()
                sample.image.save(png, format="PNG")
                _add_member(tar, f"{key}.png", png.getvalue())
                _add_member(tar, f"{key}.txt", sample.caption.encode("utf-8"))
                _add_member(tar, f"{key}.json", json.dumps(_json_record(sample)).encode("utf-8"))
        paths.append(path)
    return paths
