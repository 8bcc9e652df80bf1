"""The shapes world's attributes, records, geometry and seed-determined held-out sets.

Everything here is shared by every variety of the world (``classic`` and the richer ones): the
categorical attributes that captions and labels talk about, the records a sample carries, the unit
polygons of the shapes and the small sampling helpers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Sequence

import numpy as np
from PIL import Image

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
#: ``test_compositional`` holds out (shape, colour) pairs, ``test_style`` (renderer, background) pairs.
SPLITS: tuple[str, ...] = ("train", "val", "test", "test_compositional", "test_style")
TASKS: tuple[str, ...] = ("shape", "colour", "shape_colour", "size", "position", "style")

#: Radius range (fraction of the image side) of each size class.
SIZE_RADIUS: dict[str, tuple[float, float]] = {"small": (0.09, 0.11), "large": (0.17, 0.20)}
OUTLINE_WIDTH = 0.04  # max stroke width of outline objects, fraction of the image side
OUTLINE_RATIO = 0.25  # stroke width relative to the radius (thinner for small objects)
FILLED_PROBABILITY = 0.65
DUPLICATE_PROBABILITY = 0.25  # multi-object scenes whose objects share shape and colour
COLOUR_JITTER = 10  # +- per RGB channel, so colours are not pixel-exact constants

_SPLIT_ID = {name: k for k, name in enumerate(SPLITS)}
_SCENE, _CAPTION, _RENDER, _SHIFT, _FINISH = 0, 1, 2, 3, 4  # independent random streams per index
_HELDOUT_STREAM = 7_919  # stream id used (with the seed only) to choose held-out pairs
_HELDOUT_STYLE_STREAM = 7_927  # the same for held-out (renderer, background) styles


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectSpec:
    """One rendered object: its categorical attributes and exact geometry.

    ``x``, ``y`` (centre) and ``radius`` are fractions of the image side, with
    y growing downwards; ``rgb`` is the jittered colour actually painted.
    ``aspect`` stretches the shape along its own x axis (by sqrt(aspect)) and
    squeezes y (by the same), before ``rotation`` (degrees); ``renderer`` is how
    it is drawn (``filled``/``outline`` in the classic world, see
    :data:`~clipforge.data.shapes.styles.RENDERERS` for the rich ones) and
    ``style`` is the renderer's caption-level family.
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
    aspect: float = 1.0
    renderer: str = ""


@dataclass
class Sample:
    """An image, its caption and the records that make the caption checkable.

    ``masks`` holds one uint8 coverage mask (H x W, 255 = fully covered) per
    object: the alpha its paint was blended with, before occlusion by later
    objects. :attr:`instance_mask` and :attr:`class_mask` resolve occlusion.
    """

    image: Image.Image
    caption: str
    objects: list[ObjectSpec]
    background: str
    attributes: dict[str, Any]
    masks: list[np.ndarray] = field(default_factory=list, repr=False)

    @cached_property
    def instance_mask(self) -> np.ndarray:
        """uint8 H x W: 0 for background, ``k + 1`` where object ``k``'s paint dominates the pixel."""
        return instance_ids(self.masks, (self.image.height, self.image.width))

    @cached_property
    def class_mask(self) -> np.ndarray:
        """uint8 H x W: 0 for background, ``1 + SHAPES.index(shape)`` of the visible object."""
        lookup = np.array([0, *(SHAPES.index(o.shape) + 1 for o in self.objects)], np.uint8)
        return lookup[self.instance_mask]


#: Names of the class-mask values: index 0 is the background, then :data:`SHAPES`.
MASK_CLASSES: tuple[str, ...] = ("background", *SHAPES)


def instance_ids(masks: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Which object each pixel shows, from coverage masks in painting order (later on top).

    Object ``k`` shows ``a_k * prod(1 - a_j for later j)`` of a pixel and the background the rest;
    the largest share wins (0 = background, ``k + 1`` = object ``k``; ties go to the background).
    """
    if not masks:
        return np.zeros(shape, np.uint8)
    alphas = np.stack(masks).astype(np.float32) * np.float32(1 / 255)
    shares = np.empty((len(masks) + 1, *shape), np.float32)
    uncovered = np.ones(shape, np.float32)
    for k in range(len(masks) - 1, -1, -1):
        shares[k + 1] = alphas[k] * uncovered
        uncovered *= 1 - alphas[k]
    shares[0] = uncovered
    return shares.argmax(axis=0).astype(np.uint8)


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


def _region_point(
    rng: np.random.Generator, position: str, r: float, margin: float = 1.1, spread: float = 1.0
) -> tuple[float, float]:
    """Sample a centre inside ``position``'s region keeping the object in frame.

    ``margin`` x the radius (+ 0.02) stays clear of the border; ``spread`` widens the
    region across its axis and the centre box (1 = classic; the caption's position
    stays true as long as the across offset is below the along offset of >= 0.16).
    """
    lo, hi = r * margin + 0.02, 1 - r * margin - 0.02
    if position == "centre":
        half = 0.05 * spread
        return rng.uniform(0.5 - half, 0.5 + half), rng.uniform(0.5 - half, 0.5 + half)
    near = rng.uniform(lo, max(lo, 0.34))
    far = rng.uniform(min(hi, 0.66), hi)
    across = rng.uniform(0.5 - 0.08 * spread, 0.5 + 0.08 * spread)
    return {
        "left": (near, across),
        "right": (far, across),
        "top": (across, near),
        "bottom": (across, far),
    }[position]


def _layout(
    rng: np.random.Generator,
    n: int,
    size_radius: dict[str, tuple[float, float]] = SIZE_RADIUS,
    separation: float = 0.92,
    margin: float = 1.1,
    spread: float = 1.0,
) -> list[tuple[str, str, float, float, float]]:
    """Sizes, positions and centres for ``n`` objects in distinct position regions.

    Centres are at least ``separation`` x the sum of the two radii apart (0.92: they
    barely overlap; lower values let later objects occlude earlier ones). Falls back
    to all-small objects if a layout is hard to fit. ``margin`` and ``spread`` are
    :func:`_region_point`'s.
    """
    for attempt in range(200):
        sizes = [_pick(rng, SIZES) for _ in range(n)] if attempt < 20 else ["small"] * n
        if n == 3 and sizes.count("large") > 1:
            continue
        positions = [POSITIONS[int(k)] for k in rng.permutation(len(POSITIONS))[:n]]
        radii = [float(rng.uniform(*size_radius[s])) for s in sizes]
        centres = [_region_point(rng, p, r, margin, spread) for p, r in zip(positions, radii)]
        pairs = ((i, j) for i in range(n) for j in range(i))
        if all(math.dist(centres[i], centres[j]) >= separation * (radii[i] + radii[j]) for i, j in pairs):
            return [(s, p, float(x), float(y), r) for s, p, (x, y), r in zip(sizes, positions, centres, radii)]
    raise RuntimeError("could not lay out objects")  # pragma: no cover - practically unreachable


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


def choose_heldout(
    seed: int,
    fraction: float,
    rows: Sequence[str],
    cols: Sequence[str],
    stream: int = _HELDOUT_STREAM,
    what: str = "heldout_fraction",
) -> frozenset[tuple[str, str]]:
    """Seed-determined ``(row, col)`` pairs withheld from training.

    ``round(fraction * len(rows) * len(cols))`` pairs, at most ``ceil(n / min(len(rows),
    len(cols)))`` per row and per column, so every row and every column value still occurs
    in training with most partners. Used for (shape, colour) and (renderer, background) pairs.
    """
    pairs = [(r, c) for r in rows for c in cols]
    n = int(round(fraction * len(pairs)))
    if n == 0:
        return frozenset()
    cap = math.ceil(n / min(len(rows), len(cols)))
    if cap > min(len(rows), len(cols)) - 1:
        raise ValueError(f"{what}={fraction} leaves some value unseen in training")
    rng = np.random.default_rng([seed, stream])
    while True:
        chosen: list[tuple[str, str]] = []
        per_row: dict[str, int] = {}
        per_col: dict[str, int] = {}
        for k in rng.permutation(len(pairs)):
            r, c = pairs[k]
            if per_row.get(r, 0) < cap and per_col.get(c, 0) < cap:
                chosen.append((r, c))
                per_row[r] = per_row.get(r, 0) + 1
                per_col[c] = per_col.get(c, 0) + 1
                if len(chosen) == n:
                    return frozenset(chosen)


# ---------------------------------------------------------------------------
