"""Rendering primitives of the shapes world: backgrounds, anti-aliased coverage masks, painting.

These are the classic world's renderer (whose pixels are pinned by tests) and the building blocks
the richer varieties in :mod:`.styles` compose.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .attributes import OUTLINE_RATIO, OUTLINE_WIDTH, SHAPE_POLYGONS, ObjectSpec, _pick


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
    """The object's outline in pixel coordinates of a ``scale`` x ``scale`` canvas."""
    theta = math.radians(obj.rotation)
    rot = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    unit = SHAPE_POLYGONS[obj.shape]
    if obj.aspect != 1.0:
        stretch = math.sqrt(obj.aspect)
        unit = unit * np.array([stretch, 1 / stretch])
    pts = unit @ rot * (obj.radius * scale) + np.array([obj.x, obj.y]) * scale
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
