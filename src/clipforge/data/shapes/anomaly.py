"""Anomaly parts: a deterministic shapes-world anomaly-detection set in the spirit of MVTec AD.

A *category* is one kind of industrial part: a fixed shape in a fixed colour, drawn by a fixed
renderer on its own kind of background, centred with small jitter in position (+-3% of the side),
rotation (+-4 degrees; the circle turns freely), scale (+-10%) and lighting (part colour +-5%
brightness and +-8 per channel, background +-4 levels, a light ramp and colour cast, sensor grain).
Normal images of a category therefore look alike, like parts on a production line. The part is
about half the image wide (45-55%).

A *defect* is drawn by parameters onto the very part the same ``(seed, category, split, index)``
gives undamaged (``anomaly_sample(..., defect=None)``), so a defective image and the good image of
its index differ exactly inside the defect's mask:

=========  ====================================================================================
missing    a bite (disc) or wedge (triangle) cut out of the outline; the background shows through
spot       a blob of a clearly foreign colour (rust, oil, cyan or magenta paint) on the part
scratch    a thin, slightly bent line (1-3 px at 128 px) in a contrasting dark or light tone
deform     a bump (the part grows) or dent (it shrinks) in the outline: a flat ellipse along it
texture    a patch of the part with the wrong texture: stripes, a checkerboard or blotches
=========  ====================================================================================

A defect's target area is 3-15% of the part's, drawn per index (the masks measure 1-20% of the
part, scratches 2-10%). The mask is exactly the pixels where the defect changed the 8-bit image by
at least :data:`VISIBLE_CHANGE` levels in some channel; pixels it would change by less are left as
the good render's, so every pixel outside the mask equals the undamaged part's and every pixel
inside differs visibly.

Every sample is a pure function of ``(seed, category, split, index, image_size, defect)``, seeded
like the rest of the shapes world. :func:`write_anomaly_dataset` writes the MVTec AD folder layout
that :class:`clipforge.data.anomaly.AnomalySet` reads. Speed on one core (CPU time), 128 px: about
950 good images/s and 550 defective ones/s, not counting PNG encoding (1.5x that at 64 px, half
at 224 px).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from .attributes import COLOURS, SHAPE_POLYGONS, ObjectSpec
from .render import _coords, _paint, _polygon, _smooth_noise, render_mask
from .styles import _gaussian, draw_object, paint_field, rich_background

__all__ = [
    "ANOMALY_CATEGORIES",
    "ANOMALY_PARTS",
    "DEFECTS",
    "VISIBLE_CHANGE",
    "AnomalyPart",
    "AnomalySample",
    "anomaly_sample",
    "write_anomaly_dataset",
]


@dataclass(frozen=True)
class AnomalyPart:
    """How one category's part is made (its shape is the category's name): a colour of
    :data:`~clipforge.data.shapes.COLOURS`, a renderer of :func:`draw_object` (``filled`` or
    ``shaded``), a rich background kind and the largest rotation."""

    colour: str
    renderer: str
    background: str
    rotation: float  # largest rotation either way, degrees (180 = free)


#: The categories: one kind of part each (shape -> colour, renderer, background, rotation jitter).
ANOMALY_PARTS: dict[str, AnomalyPart] = {
    "circle": AnomalyPart("orange", "shaded", "light", 180.0),
    "square": AnomalyPart("blue", "filled", "texture", 4.0),
    "star": AnomalyPart("yellow", "filled", "dark", 4.0),
    "hexagon": AnomalyPart("green", "shaded", "gradient", 4.0),
    "cross": AnomalyPart("purple", "filled", "plain", 4.0),
    "triangle": AnomalyPart("red", "shaded", "noise", 4.0),
}
ANOMALY_CATEGORIES: tuple[str, ...] = tuple(ANOMALY_PARTS)
DEFECTS: tuple[str, ...] = ("missing", "spot", "scratch", "deform", "texture")
GOOD = "good"
ANOMALY_SPLITS: tuple[str, ...] = ("train", "test")
#: Least change (8-bit levels, largest channel) that puts a pixel in a defect's mask.
VISIBLE_CHANGE = 12

_WIDTH = 0.5  # the part's width, fraction of the side (before the +-10% scale jitter)
_SHIFT = 0.03  # position jitter, fraction of the side
_SCALE = 0.1  # scale jitter, fraction
_AREA = (0.03, 0.15)  # defect area, fraction of the part's area
#: Spot colours (rust, oil, cyan and magenta paint); a spot takes one at least 160 RGB units from the part's.
_STAINS = np.array([(150, 75, 30), (32, 26, 22), (40, 200, 215), (225, 40, 165)], np.float32)
_SCRATCH_TONES = np.array([(38, 36, 34), (236, 236, 228)], np.float32)
_PART_STREAM, _FINISH_STREAM, _SHADE_STREAM, _BACKGROUND_STREAM, _DEFECT_STREAM = 0, 1, 2, 3, 10


@dataclass(frozen=True)
class AnomalySample:
    """One image of a part: ``mask`` (bool H x W) is True where the defect changed it (all False if good)."""

    image: Image.Image
    mask: np.ndarray
    defect: str
    category: str


def _check(what: str, value: object, choices: Sequence[str], plural: str = "") -> None:
    if value not in choices:
        raise ValueError(f"unknown anomaly {what} {value!r}; the {plural or what + 's'} are {', '.join(choices)}")


def _rng(seed: int, category: str, split: str, index: int, stream: int) -> np.random.Generator:
    key = [seed, ANOMALY_CATEGORIES.index(category), ANOMALY_SPLITS.index(split), index, stream]
    return np.random.default_rng(key)


@lru_cache(maxsize=24)
def _background(seed: int, category: str, size: int) -> np.ndarray:
    """The category's background (float32 H x W x 3, read-only), fixed by the seed."""
    part = ANOMALY_PARTS[category]
    rng = np.random.default_rng([seed, ANOMALY_CATEGORIES.index(category), _BACKGROUND_STREAM])
    colours = np.array([COLOURS[part.colour]], np.float32)
    pixels = rich_background(rng, part.background, size, 4, colours, 75.0).astype(np.float32)
    pixels.flags.writeable = False
    return pixels


def _half_width(shape: str) -> float:
    return float(np.abs(SHAPE_POLYGONS[shape][:, 0]).max())


def _part(seed: int, category: str, split: str, index: int) -> tuple[ObjectSpec, float]:
    """The part's geometry and colour for one index, and the background's brightness offset."""
    part, rng = ANOMALY_PARTS[category], _rng(seed, category, split, index, _PART_STREAM)
    x, y = 0.5 + rng.uniform(-_SHIFT, _SHIFT, 2)
    radius = _WIDTH / 2 / _half_width(category) * rng.uniform(1 - _SCALE, 1 + _SCALE)
    rotation = rng.uniform(-part.rotation, part.rotation)
    base = np.asarray(COLOURS[part.colour], np.float32)
    rgb = np.clip(base * (1 + rng.uniform(-0.05, 0.05)) + rng.uniform(-8, 8, 3), 0, 255)
    spec = ObjectSpec(
        shape=category, colour=part.colour, size="large", position="centre", style="filled",
        x=float(x), y=float(y), radius=float(radius), rotation=float(rotation),
        rgb=(int(rgb[0]), int(rgb[1]), int(rgb[2])), renderer=part.renderer,
    )  # fmt: skip
    return spec, float(rng.uniform(-4, 4))


# ---------------------------------------------------------------------------
# Defect geometry (pixel units of a size x size image)
# ---------------------------------------------------------------------------


def _boundary(obj: ObjectSpec, size: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Where the ray from the part's centre at ``angle`` (radians, y down) leaves its outline, and
    the outline's inward normal there (pixels; unit vector)."""
    points = np.asarray(_polygon(obj, size))
    centre = np.array([obj.x, obj.y]) * size
    d = np.array([math.cos(angle), math.sin(angle)])
    a, b = points - centre, np.roll(points, -1, axis=0) - centre
    e = b - a
    denom = d[0] * e[:, 1] - d[1] * e[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (a[:, 0] * e[:, 1] - a[:, 1] * e[:, 0]) / denom  # distance along the ray
        u = (a[:, 0] * d[1] - a[:, 1] * d[0]) / denom  # position along the edge
    t = np.where((np.abs(denom) > 1e-12) & (u >= 0) & (u <= 1) & (t > 0), t, -np.inf)
    k = int(t.argmax())
    normal = np.array([-e[k, 1], e[k, 0]]) / max(float(np.hypot(*e[k])), 1e-9)
    if normal @ d > 0:
        normal = -normal
    return centre + d * (float(t[k]) if np.isfinite(t[k]) else obj.radius * size), normal


def _placed(local: Image.Image, x0: int, y0: int, size: int) -> np.ndarray:
    """A coverage drawn on a small canvas whose corner is pixel ``(x0, y0)``, placed on the
    ``size`` x ``size`` image (float32 0..1; drawing small is much faster than drawing whole)."""
    out = np.zeros((size, size), np.float32)
    h, w = local.height, local.width
    top, left, bottom, right = max(y0, 0), max(x0, 0), min(y0 + h, size), min(x0 + w, size)
    if bottom > top and right > left:
        part = np.asarray(local, np.float32)[top - y0 : bottom - y0, left - x0 : right - x0]
        out[top:bottom, left:right] = part * np.float32(1 / 255)
    return out


def _blob(
    shape: str, centre: np.ndarray, radius: float, size: int, rotation: float = 0.0, aspect: float = 1.0
) -> np.ndarray:
    """Anti-aliased coverage (float32 0..1, H x W) of a disc, ellipse or triangle, via :func:`render_mask`."""
    reach = radius * 1.1 * max(math.sqrt(aspect), 1 / math.sqrt(aspect)) + 2
    x0, y0 = math.floor(centre[0] - reach), math.floor(centre[1] - reach)
    side = math.ceil(2 * reach) + 1
    spec = ObjectSpec(
        shape=shape, colour="", size="", position="", style="filled", x=(float(centre[0]) - x0) / side,
        y=(float(centre[1]) - y0) / side, radius=radius / side, rotation=rotation, rgb=(0, 0, 0), aspect=aspect,
    )  # fmt: skip
    return _placed(render_mask(spec, side), x0, y0, size)


def _line(points: np.ndarray, width: float, size: int, supersample: int = 4) -> np.ndarray:
    """Anti-aliased coverage (float32 0..1, H x W) of a polyline ``width`` pixels wide."""
    x0, y0 = (math.floor(v - width - 2) for v in points.min(axis=0))
    w, h = (math.ceil(v + width + 2) - c + 1 for v, c in zip(points.max(axis=0), (x0, y0)))
    canvas = Image.new("L", (w * supersample, h * supersample), 0)
    scaled = [tuple(p) for p in ((points - (x0, y0)) * supersample).tolist()]
    ImageDraw.Draw(canvas).line(scaled, fill=255, width=max(1, round(width * supersample)), joint="curve")
    return _placed(canvas.reduce(supersample), x0, y0, size)


def _pattern(rng: np.random.Generator, size: int) -> np.ndarray:
    """A two-level wrong texture (bool H x W): stripes, a checkerboard or blotches."""
    x, y = _coords(size)
    kind = int(rng.integers(0, 3))
    period = rng.uniform(3.0, 6.0) / 128  # fraction of the side
    theta = rng.uniform(0, np.pi)
    u = math.cos(theta) * x + math.sin(theta) * y
    if kind == 0:
        return np.asarray(np.floor(u / period) % 2 == 0)
    if kind == 1:
        v = -math.sin(theta) * x + math.cos(theta) * y
        return np.asarray((np.floor(u / period) + np.floor(v / period)) % 2 == 0)
    return _smooth_noise(rng, size, int(rng.integers(12, 20)), 40.0)[..., 0] > 0


def _farthest(options: np.ndarray, rgb: Sequence[int]) -> list[float]:
    distances = ((options - np.asarray(rgb, np.float32)) ** 2).sum(axis=1)
    return [float(v) for v in options[int(distances.argmax())]]


def _box(coverage: np.ndarray) -> tuple[slice, slice] | None:
    """The bounding box of a coverage's non-zero pixels (None if there are none)."""
    rows, cols = np.flatnonzero(coverage.any(axis=1)), np.flatnonzero(coverage.any(axis=0))
    if rows.size == 0:
        return None
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _damage(
    defect: str,
    rng: np.random.Generator,
    obj: ObjectSpec,
    alpha: np.ndarray,
    field: np.ndarray | None,
    background: np.ndarray,
    good: np.ndarray,
) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """``defect`` drawn on the part: the box it changes and the box's new pixels (float, before
    finishing), or None if it missed the part."""
    size = alpha.shape[0]
    centre, radius = np.array([obj.x, obj.y]) * size, obj.radius * size
    area = float(alpha.sum()) / 255 * rng.uniform(*_AREA)  # the defect's target area, pixels
    angle = rng.uniform(0, 2 * np.pi)
    cover = alpha.astype(np.float32) * np.float32(1 / 255)
    if defect in ("missing", "deform"):
        edge, inward = _boundary(obj, size, angle)
        depth = 0.55 * float(np.hypot(*(edge - centre)))  # never deeper than half-way to the centre
        facing = math.degrees(math.atan2(inward[1], inward[0]))
        if defect == "missing" and rng.random() < 0.5:  # a bite: a disc centred on the outline
            cut = _blob("circle", edge, min(math.sqrt(2 * area / math.pi), depth), size)
        elif defect == "missing":  # a wedge pointing inwards
            r = min(math.sqrt(area / 0.65), depth / 0.7)
            cut = _blob("triangle", edge - inward * 0.35 * r, r, size, facing + 90, 0.6)
        else:  # a flat ellipse along the outline, half inside and half outside
            flat = rng.uniform(1.6, 2.4)
            r = min(math.sqrt(2 * area / math.pi), depth * math.sqrt(flat))
            cut = _blob("circle", edge, r, size, facing + 90, flat)
        box = _box(cut)
        if box is None:
            return None
        grow = defect == "deform" and rng.random() < 0.5
        changed = np.maximum(cover[box], cut[box]) if grow else cover[box] * (1 - cut[box])
        pixels = background[box].copy()
        paint_field(pixels, np.round(changed * 255).astype(np.uint8), obj.rgb, None if field is None else field[box])
        return box, pixels
    offset = rng.uniform(0, 0.45 if defect == "spot" else 0.3) * radius
    spot = centre + offset * np.array([math.cos(angle), math.sin(angle)])
    if defect == "spot":
        r = math.sqrt(area / math.pi)
        blob = _blob("circle", spot, r, size, rng.uniform(0, 180), rng.uniform(1.0, 1.8))
        nudge = rng.uniform(-0.5, 0.5, 2) * r  # a second lobe makes the blob irregular
        coverage = np.maximum(blob, _blob("circle", spot + nudge, r * rng.uniform(0.5, 0.8), size)) * cover
        distance = ((_STAINS - np.asarray(obj.rgb, np.float32)) ** 2).sum(axis=1)
        foreign = np.flatnonzero(distance >= 160**2)
        pick = int(foreign[int(rng.integers(0, foreign.size))]) if foreign.size else int(distance.argmax())
        colour = _STAINS[pick].tolist()
    elif defect == "scratch":
        psi = rng.uniform(0, np.pi)
        along, across = np.array([math.cos(psi), math.sin(psi)]), np.array([-math.sin(psi), math.cos(psi)])
        half = rng.uniform(0.5, 0.85) * radius
        bend = rng.uniform(-0.12, 0.12) * radius
        points = np.stack([spot - along * half, spot + across * bend, spot + along * half])
        coverage = _line(points, rng.uniform(1.0, 2.6) * size / 128, size) * cover
        colour = _farthest(_SCRATCH_TONES, obj.rgb)
    else:  # texture
        patch = _blob("circle", spot, math.sqrt(area / math.pi), size, rng.uniform(0, 180), rng.uniform(1.0, 1.6))
        coverage = patch * cover
        on = _pattern(rng, size)
    box = _box(coverage > 0)
    if box is None:
        return None
    pixels = good[box].copy()
    if defect == "texture":  # alternately darker and lighter than the part
        before = pixels
        target = np.where(on[box][..., None], before * 0.5, before + 0.55 * (255 - before))
        return box, before + coverage[box][..., None] * (target - before)
    _paint(pixels, np.round(coverage[box] * 255).astype(np.uint8), colour)
    return box, pixels


def _lighting(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One image's finishing, as a gain and an offset (float32 H x W x 3): a directional light
    ramp (up to +-5%) times a warm/cool colour cast (+-2%), and sensor grain (sigma 1.5-4)."""
    cast = rng.uniform(-0.02, 0.02)
    theta, strength = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.05) / math.sqrt(0.5)
    x, y = _coords(size)
    ramp = (math.cos(theta) * (x - 0.5) + math.sin(theta) * (y - 0.5)) * np.float32(strength) + 1
    gain = np.empty((size, size, 3), np.float32)
    for channel, factor in enumerate((1 + cast, 1.0, 1 - cast)):  # (per channel: far faster than broadcasting)
        gain[..., channel] = ramp * np.float32(factor)
    return gain, _gaussian(rng, size, size, 3) * np.float32(rng.uniform(1.5, 4.0))


def _uint8(pixels: np.ndarray) -> np.ndarray:
    return np.clip(pixels + 0.5, 0, 255).astype(np.uint8)


def anomaly_sample(
    category: str,
    split: str,
    index: int,
    *,
    seed: int = 0,
    image_size: int = 128,
    defect: str | None = None,
) -> AnomalySample:
    """One image of ``category``'s part: good (``split="train"``, or ``"test"`` with ``defect=None``
    or ``"good"``) or with ``defect`` drawn on the good part of the same index.

    A pure function of its arguments. Unknown categories, splits and defects, a defect asked of
    the training split, a negative index and an image smaller than 16 px raise ``ValueError``.
    """
    _check("category", category, ANOMALY_CATEGORIES, "categories")
    _check("split", split, ANOMALY_SPLITS)
    if defect is not None and defect != GOOD:
        _check("defect", defect, DEFECTS)
        if split == "train":
            raise ValueError(f"the train split is all good; defect {defect!r} exists only in the test split")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    obj, brightness = _part(seed, category, split, index)
    shade = np.random.default_rng([seed, ANOMALY_CATEGORIES.index(category), _SHADE_STREAM])
    alpha, field = draw_object(obj, shade, image_size)
    background = _background(seed, category, image_size) + np.float32(brightness)
    good = background.copy()
    paint_field(good, alpha, obj.rgb, field)
    gain, grain = _lighting(_rng(seed, category, split, index, _FINISH_STREAM), image_size)
    finished = good * gain + grain
    image = _uint8(finished)
    mask = np.zeros(image.shape[:2], bool)
    if defect is None or defect == GOOD:
        return AnomalySample(Image.fromarray(image, "RGB"), mask, GOOD, category)
    rng = _rng(seed, category, split, index, _DEFECT_STREAM + DEFECTS.index(defect))
    for _attempt in range(20):  # a defect that misses the part (practically never) is drawn again
        drawn = _damage(defect, rng, obj, alpha, field, background, good)
        if drawn is None:
            continue
        box, pixels = drawn
        # the finishing is affine in the pixels: it scales the defect's change by the gain
        damaged = _uint8(finished[box] + gain[box] * (pixels - good[box])).astype(np.int16)
        change = np.abs(damaged - image[box])
        visible = np.maximum(np.maximum(change[..., 0], change[..., 1]), change[..., 2]) >= VISIBLE_CHANGE
        if visible.any():
            mask[box] = visible
            image[box][visible] = damaged[visible]
            return AnomalySample(Image.fromarray(image, "RGB"), mask, defect, category)
    raise RuntimeError(f"could not draw {defect!r} on {category!r} index {index}")  # pragma: no cover


def write_anomaly_dataset(
    root: str | Path,
    categories: Sequence[str] | None = None,
    *,
    n_train: int = 20,
    n_test_good: int = 10,
    n_test_per_defect: int = 4,
    image_size: int = 128,
    seed: int = 0,
    defects: Sequence[str] | None = None,
) -> Path:
    """Write the MVTec AD layout (what :class:`clipforge.data.anomaly.AnomalySet` reads); return ``root``.

    ``ROOT/CATEGORY/train/good/000.png``, ``test/good/000.png``, ``test/DEFECT/000.png`` and
    ``ground_truth/DEFECT/000_mask.png`` (L mode, 0 or 255). File ``NNN`` of a folder is
    ``anomaly_sample(CATEGORY, split, NNN, defect=...)``, so ``test/DEFECT/NNN.png`` is
    ``test/good/NNN.png`` (if written) with the defect drawn on it.
    """
    names = tuple(ANOMALY_CATEGORIES if categories is None else categories)
    kinds = tuple(DEFECTS if defects is None else defects)
    for name in names:
        _check("category", name, ANOMALY_CATEGORIES, "categories")
    for kind in kinds:
        _check("defect", kind, DEFECTS)
    if min(n_train, n_test_good, n_test_per_defect) < 0:
        raise ValueError("n_train, n_test_good and n_test_per_defect must be >= 0")
    width = max(3, len(str(max(n_train, n_test_good, n_test_per_defect) - 1)))
    out = Path(root)

    def write(category: str, split: str, defect: str, n: int) -> None:
        folder = out / category / split / defect
        folder.mkdir(parents=True, exist_ok=True)
        masks = out / category / "ground_truth" / defect
        if defect != GOOD and n:
            masks.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            s = anomaly_sample(category, split, i, seed=seed, image_size=image_size, defect=defect)
            s.image.save(folder / f"{i:0{width}d}.png")
            if defect != GOOD:
                Image.fromarray(s.mask.astype(np.uint8) * 255, "L").save(masks / f"{i:0{width}d}_mask.png")

    for category in names:
        write(category, "train", GOOD, n_train)
        write(category, "test", GOOD, n_test_good)
        for kind in kinds:
            if n_test_per_defect:
                write(category, "test", kind, n_test_per_defect)
    return out
