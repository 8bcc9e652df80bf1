"""`clipforge segment IMAGES... --labels "circle,square" --out DIR`: training-free zero-shot segmentation.

Writes, per image, `NAME.mask.png` (pixel value = 1 + label index, 0 = background when
`--background-threshold` is given, else label index) and `NAME.overlay.png` (the image tinted by
class, with a legend), plus `segments.json` (labels, per-image class areas, skipped files).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from ..data.inputs import item_images, resolve_items
from ..dense import METHODS, dense_pixels, segment
from ..files import write_json_atomic
from ..images import ImageDecodeError, SkipLog
from ..model.clip import CLIP
from ..zeroshot import classifier_weights, parse_labels, resolve_templates
from .common import add_model_arguments, load_from_args

HELP = "zero-shot segmentation: per-pixel labels from dense CLIP features (MaskCLIP, SCLIP, ClearCLIP, NACLIP)"

#: overlay colours (tab10), background left untinted
PALETTE = np.array(
    [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
     (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)],
    dtype=np.float32,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", help="image files, folders, glob patterns, or one CSV manifest")
    parser.add_argument("--labels", required=True, help='comma-separated class names ("circle,square") or a file')
    parser.add_argument("--out", default="segments", help="folder for masks, overlays and segments.json")
    parser.add_argument("--method", choices=METHODS, default="maskclip", help="dense readout (default maskclip)")
    parser.add_argument(
        "--background-threshold",
        type=float,
        default=None,
        help="pixels whose best class cosine is below this become background (0); default: no background",
    )
    parser.add_argument(
        "--templates", default="openai", help="prompt templates: openai, openai7, simple, none, or a file"
    )
    add_model_arguments(parser)


def overlay(image: Image.Image, labels: np.ndarray, names: list[str], offset: int) -> Image.Image:
    """The image with each labelled pixel tinted by its class colour, and a legend."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    colour = PALETTE[(labels - offset) % len(PALETTE)]
    tinted = np.where((labels >= offset)[..., None], 0.45 * rgb + 0.55 * colour, rgb)
    out = Image.fromarray(tinted.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    present = sorted(set(np.unique(labels).tolist()) - ({0} if offset else set()))
    for row, value in enumerate(present):
        draw.rectangle((2, 2 + 11 * row, 10, 10 + 11 * row), fill=tuple(int(c) for c in PALETTE[(value - offset) % 10]))
        draw.text((13, 11 * row), names[value - offset], fill=(255, 255, 255))
    return out


def run(args: argparse.Namespace) -> int:
    names = parse_labels(args.labels)
    images = item_images(resolve_items(args.images))
    if not len(images):
        raise ValueError("no images found in the given inputs")
    model, _preprocess, tokenizer = load_from_args(args)
    if not isinstance(model, CLIP):
        raise ValueError("segment runs on the plain model; drop --backend/--precision engine options")
    weights = classifier_weights(model, tokenizer, names, resolve_templates(args.templates))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    offset = 1 if args.background_threshold is not None else 0
    skipped, written = SkipLog(), []
    for i in tqdm(range(len(images)), desc=f"segmenting ({args.method})"):
        try:
            image = images.load(i)
        except ImageDecodeError as exc:
            skipped.add(images.name(i), exc.reason)
            continue
        size = (image.height, image.width)
        pred = segment(model, dense_pixels(model, image), weights, args.method, args.background_threshold, size)[0]
        labels = pred[0].cpu().numpy().astype(np.uint8)
        stem = f"{i:06d}-{Path(images.name(i)).stem}"
        Image.fromarray(labels).save(out / f"{stem}.mask.png")
        overlay(image, labels, names, offset).save(out / f"{stem}.overlay.png")
        areas = {names[v - offset]: float((labels == v).mean()) for v in np.unique(labels).tolist() if v >= offset}
        written.append({"image": images.name(i), "mask": f"{stem}.mask.png", "areas": areas})
    summary = {
        "labels": (["background"] if offset else []) + names,
        "method": args.method,
        "images": written,
        "skipped": skipped.count,
        "skipped_items": [{"source": s, "reason": r} for s, r in skipped.items],
    }
    write_json_atomic(out / "segments.json", summary)
    print(f"segmented {len(written)} image(s) ({skipped.count} skipped) → {out}")
    print(json.dumps({"out": str(out), "segmented": len(written), "skipped": skipped.count}))
    return 0 if written else 1
