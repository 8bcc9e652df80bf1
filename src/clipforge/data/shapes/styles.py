"""Varieties of the shapes world: how its scenes are drawn.

A :class:`Variety` is a named bundle of the generator's drawing parameters: which renderers draw
objects (filled, outlined, thick or thin strokes, hatched or textured fills, soft edges, shading),
which backgrounds lie behind them (flat light or dark, gradients, noise, textures, clutter of
distractor strokes), how far shapes rotate and stretch, how large they get and how much they may
occlude each other, and the finishing (colour jitter, lighting, sensor grain, JPEG artefacts).

``classic`` is the original generator, pixel for pixel (its fields only document it); ``rich``
uses every renderer and background; ``clean`` draws plain filled shapes on flat backgrounds with
the rich geometry (rotation, stretch, occlusion) -- the easy case for checking masks and for
measuring transfer from the rich world to simple drawings.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import Sequence

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from .attributes import BACKGROUNDS, OUTLINE_RATIO, OUTLINE_WIDTH, SHAPES, STYLES, ObjectSpec, _pick
from .render import _coords, _muted, _paint, _polygon, _smooth_noise, render_background

__all__ = [
    "ASPECT_LIMIT",
    "RENDERERS",
    "RICH_BACKGROUNDS",
    "ROTATION_LIMIT",
    "VARIETIES",
    "Variety",
    "resolve_variety",
]

#: Every renderer and the caption-level style (``filled``/``outline``) it counts as.
RENDERERS: dict[str, str] = {
    "filled": "filled",  # solid, anti-aliased
    "soft": "filled",  # solid with blurred (soft) edges
    "shaded": "filled",  # solid with a light-to-dark ramp across the object
    "textured": "filled",  # solid with a brightness texture (noise, stripes or dots)
    "hatched": "filled",  # a pale tint crossed by parallel hatch lines, with a border
    "outline": "outline",  # a medium stroke (the classic outline)
    "thin": "outline",  # a hairline stroke
    "thick": "outline",  # a heavy stroke
}
#: Backgrounds of the rich varieties (``plain`` is the classic muted grey).
RICH_BACKGROUNDS: tuple[str, ...] = ("plain", "light", "dark", "gradient", "noise", "texture", "clutter")
#: Largest rotation (degrees, either way) under which a shape keeps its name (a square turned
#: by 45 degrees is a diamond; a triangle, star or hexagon may turn freely).
ROTATION_LIMIT: dict[str, float] = {
    "circle": 90.0,  # matters only once the aspect stretch makes it an ellipse
    "square": 20.0,
    "triangle": 180.0,
    "star": 180.0,
    "hexagon": 180.0,
    "cross": 25.0,
    "heart": 30.0,
    "diamond": 20.0,
}
#: Largest aspect stretch (width / height of the unit shape) under which a shape keeps its name.
ASPECT_LIMIT: dict[str, float] = {
    "circle": 1.3,
    "square": 1.2,
    "triangle": 1.25,
    "star": 1.15,
    "hexagon": 1.2,
    "cross": 1.15,
    "heart": 1.15,
    "diamond": 1.12,  # a wider diamond starts to look like a turned square
}
_TEXTURES = ("noise", "stripes", "dots")
_BACKGROUND_PATTERNS = ("weave", "dots", "waves", "grain")
_TILE = 256  # side of the shared Gaussian noise tile


@lru_cache(maxsize=1)
def _noise_tile() -> np.ndarray:
    """A fixed tile of standard normal noise (float32, 256 x 256 x 3), made once per process."""
    return np.random.default_rng(20_240_601).standard_normal((_TILE, _TILE, 3), dtype=np.float32)


def _gaussian(rng: np.random.Generator, height: int, width: int, channels: int) -> np.ndarray:
    """Standard normal noise (H x W x C) cut from the shared tile at a random offset and flip.

    Drawing fresh Gaussian pixels costs more than the rest of a 64 px image; a window of a fixed
    tile is as good for grain and stays a pure function of ``rng``.
    """
    tile = _noise_tile()
    if height > _TILE or width > _TILE:
        reps = (-(-height // _TILE), -(-width // _TILE), 1)
        tile = np.tile(tile, reps)
    oy = int(rng.integers(0, tile.shape[0] - height + 1))
    ox = int(rng.integers(0, tile.shape[1] - width + 1))
    c = int(rng.integers(0, 4 - channels)) if channels < 3 else 0
    window = tile[oy : oy + height, ox : ox + width, c : c + channels]
    flip = int(rng.integers(0, 4))
    if flip & 1:
        window = window[::-1]
    if flip & 2:
        window = window[:, ::-1]
    return window


@dataclass(frozen=True)
class Variety:
    """The drawing parameters of a world (every field is a knob of the generator).

    ``renderers`` and ``backgrounds`` are what a scene may use (their combinations are what
    ``test_style`` holds out); ``small_radius``/``large_radius`` are the radius ranges (fraction
    of the side) of the two size classes; ``rotation`` and ``aspect`` scale
    :data:`ROTATION_LIMIT` and :data:`ASPECT_LIMIT` (0 = upright, unstretched); ``separation``
    is the least distance of two centres over the sum of their radii (below ~0.9 later objects
    occlude earlier ones); ``spread`` widens the position regions; ``colour_jitter`` (+- per RGB
    channel) and ``brightness_jitter`` (+- fraction) vary each object's colour; ``lighting`` is
    the largest strength of a directional light ramp over the image and ``colour_cast`` of a
    warm/cool tint; ``grain`` and ``jpeg`` are the probabilities of sensor noise and of JPEG
    artefacts (quality drawn from ``jpeg_quality``); backgrounds keep an RGB distance of at least
    ``min_contrast`` from every object's colour. ``classic=True`` means the original generator,
    whose other fields are ignored.
    """

    name: str
    renderers: tuple[str, ...] = tuple(RENDERERS)
    backgrounds: tuple[str, ...] = RICH_BACKGROUNDS
    small_radius: tuple[float, float] = (0.085, 0.125)
    large_radius: tuple[float, float] = (0.165, 0.235)
    rotation: float = 1.0
    aspect: float = 1.0
    separation: float = 0.62
    spread: float = 1.5
    colour_jitter: int = 18
    brightness_jitter: float = 0.08
    lighting: float = 0.12
    colour_cast: float = 0.04
    grain: float = 0.3
    jpeg: float = 0.3
    jpeg_quality: tuple[int, int] = (30, 80)
    min_contrast: float = 75.0
    classic: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name in ("renderers", "backgrounds", "small_radius", "large_radius", "jpeg_quality"):
                object.__setattr__(self, f.name, tuple(getattr(self, f.name)))
        if self.classic:
            return
        problems = []
        unknown = [r for r in self.renderers if r not in RENDERERS]
        if unknown or not self.renderers:
            problems.append(f"renderers must be a non-empty subset of {tuple(RENDERERS)}, got {self.renderers}")
        unknown = [b for b in self.backgrounds if b not in RICH_BACKGROUNDS]
        if unknown or not self.backgrounds:
            problems.append(f"backgrounds must be a non-empty subset of {RICH_BACKGROUNDS}, got {self.backgrounds}")
        (s0, s1), (l0, l1) = self.small_radius, self.large_radius
        if not 0.03 <= s0 <= s1 < l0 <= l1 <= 0.3:
            problems.append("radii must satisfy 0.03 <= small <= small_max < large <= large_max <= 0.3")
        if not (0 <= self.rotation <= 1 and 0 <= self.aspect <= 1 and 0.3 <= self.separation and self.spread >= 0):
            problems.append("rotation and aspect must be in [0, 1], separation >= 0.3 and spread >= 0")
        if not (0 <= self.grain <= 1 and 0 <= self.jpeg <= 1 and 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1]):
            problems.append("grain and jpeg are probabilities; jpeg_quality is a (low, high) range in 1..95")
        if problems:
            raise ValueError(f"variety {self.name!r}: " + "; ".join(problems))

    @property
    def size_radius(self) -> dict[str, tuple[float, float]]:
        return {"small": self.small_radius, "large": self.large_radius}


#: Rich geometry with none of the finishing: flat colours, no lighting, grain or compression.
_UNFINISHED = Variety(
    "unfinished", colour_jitter=10, brightness_jitter=0.0, lighting=0.0, colour_cast=0.0, grain=0.0, jpeg=0.0
)

#: The named varieties (``ShapesWorld(variety=NAME)``, ``variety=NAME`` in data specs).
VARIETIES: dict[str, Variety] = {
    "classic": replace(  # documents the original generator; its code path ignores these fields
        _UNFINISHED,
        name="classic",
        renderers=STYLES,
        backgrounds=BACKGROUNDS,
        small_radius=(0.09, 0.11),
        large_radius=(0.17, 0.20),
        rotation=12 / 180,
        aspect=0.0,
        separation=0.92,
        spread=1.0,
        min_contrast=0.0,
        classic=True,
    ),
    "rich": Variety("rich"),
    "clean": replace(_UNFINISHED, name="clean", renderers=("filled",), backgrounds=("light", "plain")),
}


def resolve_variety(variety: str | Variety) -> Variety:
    """A :class:`Variety` from itself or its name in :data:`VARIETIES`."""
    if isinstance(variety, Variety):
        return variety
    if variety not in VARIETIES:
        raise ValueError(f"variety must be one of {', '.join(VARIETIES)} (or a Variety), got {variety!r}")
    return VARIETIES[variety]


# ---------------------------------------------------------------------------
# Backgrounds
# ---------------------------------------------------------------------------


def _tone(rng: np.random.Generator, lo: float, hi: float, chroma: float) -> np.ndarray:
    return np.clip(rng.uniform(lo, hi) + rng.uniform(-chroma, chroma, 3), 0, 255).astype(np.float32)


def _away_from(tone: np.ndarray, colours: np.ndarray, min_distance: float) -> np.ndarray:
    """Move a background tone towards mid-grey until every object colour is ``min_distance`` away."""
    tone = tone.astype(np.float32)
    if len(colours) == 0 or min_distance <= 0:
        return tone
    for _ in range(40):
        if float(np.sqrt(((colours - tone) ** 2).sum(axis=1)).min()) >= min_distance:
            break
        tone = tone + np.float32(6.0 if tone.mean() < 128 else -6.0)
    return np.clip(tone, 0, 255)


def _pattern(rng: np.random.Generator, size: int) -> np.ndarray:
    """A zero-mean texture in about -1..1 (H x W)."""
    x, y = _coords(size)
    kind = _pick(rng, _BACKGROUND_PATTERNS)
    freq = rng.uniform(5, 12)
    if kind == "weave":
        return (np.sin(2 * np.pi * freq * x) * np.sin(2 * np.pi * freq * y)).astype(np.float32)
    if kind == "dots":
        dots = np.sin(2 * np.pi * freq * x) * np.sin(2 * np.pi * freq * (y + 0.25 / freq)) > 0.55
        return dots.astype(np.float32) * 2 - 0.4
    if kind == "waves":
        theta = rng.uniform(0, np.pi)
        u, v = math.cos(theta) * x + math.sin(theta) * y, -math.sin(theta) * x + math.cos(theta) * y
        return np.sin(2 * np.pi * (freq * u + 0.6 * np.sin(2 * np.pi * 2 * v))).astype(np.float32)
    streaks = rng.normal(0, 0.7, (size, 1)).astype(np.float32)  # wood-like grain: rows plus speckle
    return np.clip(streaks + _gaussian(rng, size, size, 1)[..., 0] * np.float32(0.5), -1.5, 1.5)


def _clutter(rng: np.random.Generator, pixels: np.ndarray, base: np.ndarray, size: int, ss: int) -> None:
    """Distractor strokes (open polylines and arcs) in two low-chroma tones, painted in place."""
    ss = min(ss, 2)  # thin strokes need little supersampling
    big = size * ss
    for _group in range(2):
        canvas = Image.new("L", (big, big), 0)
        draw = ImageDraw.Draw(canvas)
        for _ in range(int(rng.integers(2, 5))):
            width = max(1, round(rng.uniform(0.012, 0.03) * big))
            if rng.random() < 0.5:
                pts = rng.uniform(-0.1, 1.1, (int(rng.integers(2, 5)), 2)) * big
                draw.line([tuple(p) for p in pts.tolist()], fill=255, width=width, joint="curve")
            else:
                cx, cy, r = rng.uniform(0, 1) * big, rng.uniform(0, 1) * big, rng.uniform(0.1, 0.4) * big
                start = rng.uniform(0, 360)
                draw.arc((cx - r, cy - r, cx + r, cy + r), start, start + rng.uniform(40, 200), fill=255, width=width)
        shift = rng.uniform(35, 80) * (1 if base.mean() < 128 else -1) * (1 if rng.random() < 0.7 else -1)
        tone = np.clip(base + np.float32(shift) + rng.uniform(-8, 8, 3).astype(np.float32), 0, 255)
        mask = np.asarray(canvas.reduce(ss) if ss > 1 else canvas)
        _paint(pixels, mask, tone)


def rich_background(
    rng: np.random.Generator, kind: str, size: int, supersample: int, colours: np.ndarray, min_contrast: float
) -> np.ndarray:
    """Background pixels (H x W x 3, float32 in 0..255) of a rich kind, clear of ``colours`` (K x 3)."""
    if kind in ("paper", "checkerboard", "stripes"):  # the sketch and background shifts
        return render_background(rng, kind, size)

    def tone(lo: float, hi: float, chroma: float = 10.0) -> np.ndarray:
        return _away_from(_tone(rng, lo, hi, chroma), colours, min_contrast)

    if kind == "plain":
        return np.broadcast_to(_away_from(_muted(rng), colours, min_contrast), (size, size, 3)).copy()
    if kind == "light":
        return np.broadcast_to(tone(190, 240, 8), (size, size, 3)).copy()
    if kind == "dark":
        return np.broadcast_to(tone(22, 70, 6), (size, size, 3)).copy()
    if kind == "gradient":
        a, b = tone(40, 230, 15), tone(40, 230, 15)
        x, y = _coords(size)
        if rng.random() < 0.7:
            theta = rng.uniform(0, 2 * np.pi)
            t = (math.cos(theta) * (x - 0.5) + math.sin(theta) * (y - 0.5)) / math.sqrt(0.5) + 0.5
        else:  # radial, from an off-centre point
            cx, cy = rng.uniform(0.2, 0.8, 2)
            t = np.sqrt((x - cx) ** 2 + (y - cy) ** 2) / 0.8
        return (a + (b - a) * np.clip(t, 0, 1)[..., None]).astype(np.float32)
    if kind == "noise":
        base = tone(60, 200, 10)
        cells = int(_pick(rng, (4, 6, 8, 12)))
        fine = _gaussian(rng, size, size, 1) * np.float32(rng.uniform(3, 9))
        return np.clip(base + _smooth_noise(rng, size, cells, rng.uniform(10, 22)) + fine, 0, 255)
    if kind == "texture":
        base = tone(50, 215, 12)
        amplitude = np.float32(rng.uniform(10, 22))
        return np.clip(base + amplitude * _pattern(rng, size)[..., None], 0, 255).astype(np.float32)
    if kind == "clutter":
        base = tone(40, 225, 10)
        pixels = np.broadcast_to(base, (size, size, 3)).copy()
        _clutter(rng, pixels, base, size, supersample)
        return pixels
    raise ValueError(f"unknown background {kind!r}")


# ---------------------------------------------------------------------------
# Objects
# ---------------------------------------------------------------------------


def _stroke_width(renderer: str, obj: ObjectSpec, rng: np.random.Generator) -> float:
    """Stroke width of an outline renderer, as a fraction of the image side."""
    if renderer == "thin":
        return max(0.014, 0.08 * obj.radius) * rng.uniform(0.9, 1.15)
    if renderer == "thick":
        return min(0.075, 0.42 * obj.radius) * rng.uniform(0.85, 1.1)
    return min(OUTLINE_WIDTH, OUTLINE_RATIO * obj.radius) * rng.uniform(0.8, 1.2)


def _hatch(canvas: Image.Image, obj: ObjectSpec, rng: np.random.Generator, big: int) -> Image.Image:
    """Parallel lines across the object's bounding square (drawn on ``canvas``, returned)."""
    draw = ImageDraw.Draw(canvas)
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(0.035, 0.06) * big
    width = max(1, round(period * rng.uniform(0.35, 0.5)))
    d = np.array([math.cos(theta), math.sin(theta)])
    normal = np.array([-d[1], d[0]])
    centre, reach = np.array([obj.x, obj.y]) * big, obj.radius * big * 1.25
    for offset in np.arange(-reach, reach + period, period):
        mid = centre + normal * offset
        a, b = mid - d * reach, mid + d * reach
        draw.line([tuple(a.tolist()), tuple(b.tolist())], fill=255, width=width)
    return canvas


def _texture_field(rng: np.random.Generator, obj: ObjectSpec, size: int) -> np.ndarray:
    """A brightness factor field (H x W) around 1 for textured fills."""
    kind = _pick(rng, _TEXTURES)
    amplitude = rng.uniform(0.12, 0.22)
    tex: np.ndarray
    if kind == "noise":
        tex = _smooth_noise(rng, size, int(_pick(rng, (6, 10, 14))), 40.0)[..., 0] / 40.0
    else:
        x, y = _coords(size)
        theta = rng.uniform(0, np.pi)
        freq = rng.uniform(0.8, 1.6) / max(obj.radius, 0.05)
        u = math.cos(theta) * x + math.sin(theta) * y
        if kind == "stripes":
            tex = np.sign(np.sin(2 * np.pi * freq * u))
        else:
            v = -math.sin(theta) * x + math.cos(theta) * y
            tex = (np.sin(2 * np.pi * freq * u) * np.sin(2 * np.pi * freq * v) > 0.5) * 2.0 - 0.5
    return (1 + amplitude * np.clip(tex, -1.5, 1.5)).astype(np.float32)


def _shade_field(rng: np.random.Generator, obj: ObjectSpec, size: int) -> np.ndarray:
    """A brightness ramp (H x W) across the object, from a random light direction."""
    x, y = _coords(size)
    theta = rng.uniform(0, 2 * np.pi)
    t = ((x - obj.x) * math.cos(theta) + (y - obj.y) * math.sin(theta)) / (2 * obj.radius) + 0.5
    low, high = rng.uniform(0.72, 0.85), rng.uniform(1.05, 1.15)
    return (low + (high - low) * np.clip(t, 0, 1)).astype(np.float32)


def draw_object(
    obj: ObjectSpec, rng: np.random.Generator, size: int, supersample: int = 4
) -> tuple[np.ndarray, np.ndarray | None]:
    """How one object is painted: its coverage alpha (uint8 H x W) and an optional brightness
    field (float32 H x W multiplying its colour; None for a flat colour)."""
    renderer = obj.renderer or obj.style
    big = size * supersample
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    points = _polygon(obj, big)
    field: np.ndarray | None = None
    if RENDERERS.get(renderer) == "outline":
        width = max(1, round(_stroke_width(renderer, obj, rng) * big))
        draw.polygon(points, outline=255, width=width)
    elif renderer == "hatched":
        tint = int(rng.uniform(0.52, 0.7) * 255)
        draw.polygon(points, fill=255)
        lines = _hatch(Image.new("L", (big, big), 0), obj, rng, big)
        canvas = ImageChops.lighter(canvas.point(lambda v: v * tint // 255), ImageChops.multiply(canvas, lines))
        border = max(1, round(min(0.02, 0.12 * obj.radius) * big))
        ImageDraw.Draw(canvas).polygon(points, outline=255, width=border)
    else:
        draw.polygon(points, fill=255)
    small = canvas.reduce(supersample) if supersample > 1 else canvas
    if renderer == "soft":
        small = small.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.0) * size / 64))
    elif renderer == "textured":
        field = _texture_field(rng, obj, size)
    elif renderer == "shaded":
        field = _shade_field(rng, obj, size)
    return np.asarray(small), field


def paint_field(pixels: np.ndarray, mask: np.ndarray, rgb: Sequence[float], field: np.ndarray | None) -> None:
    """Alpha-blend ``rgb`` (times a brightness ``field``, if any) into ``pixels`` in place."""
    if field is None:
        _paint(pixels, mask, rgb)
        return
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return
    box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    colour = np.clip(np.asarray(rgb, np.float32) * field[box][..., None], 0, 255)
    alpha = mask[box].astype(np.float32)[..., None] * np.float32(1 / 255)
    pixels[box] += alpha * (colour - pixels[box])


# ---------------------------------------------------------------------------
# Finishing: lighting, grain, JPEG
# ---------------------------------------------------------------------------


def light(pixels: np.ndarray, rng: np.random.Generator, variety: Variety) -> np.ndarray:
    """Directional lighting, a colour cast and sensor grain over the whole image (float pixels, in place)."""
    size = pixels.shape[0]
    if variety.colour_cast > 0:
        cast = rng.uniform(-variety.colour_cast, variety.colour_cast)
        pixels *= np.array([1 + cast, 1, 1 - cast], np.float32)
    if variety.lighting > 0:
        x, y = _coords(size)
        theta = rng.uniform(0, 2 * np.pi)
        strength = np.float32(rng.uniform(0, variety.lighting) / math.sqrt(0.5))
        ramp = (math.cos(theta) * (x - 0.5) + math.sin(theta) * (y - 0.5)) * strength + 1
        pixels *= ramp[..., None]
    if rng.random() < variety.grain:
        sigma = np.float32(rng.uniform(2, 6))
        pixels += _gaussian(rng, pixels.shape[0], pixels.shape[1], 3) * sigma
    return pixels


def compress(image: Image.Image, rng: np.random.Generator, variety: Variety) -> Image.Image:
    """JPEG artefacts with probability ``variety.jpeg`` (quality drawn from ``jpeg_quality``)."""
    if not rng.random() < variety.jpeg:
        return image
    buffer = io.BytesIO()
    low, high = variety.jpeg_quality
    image.save(buffer, format="JPEG", quality=int(rng.integers(low, high + 1)))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def stretch_and_turn(rng: np.random.Generator, shape: str, variety: Variety) -> tuple[float, float]:
    """(rotation in degrees, aspect) of one object under ``variety``."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}")
    rotation = float(rng.uniform(-1, 1)) * ROTATION_LIMIT[shape] * variety.rotation
    aspect = math.exp(float(rng.uniform(-1, 1)) * math.log(ASPECT_LIMIT[shape]) * variety.aspect)
    return rotation, aspect
