"""`clipforge demo`: the main job end to end on the embedded default model.

Generates a few shapes-world images, classifies their shape and colour zero-shot, runs text→image
retrieval over them, prints the results and writes a PNG report into --out-dir (default
$CLIPFORGE_CACHE/demo, else ~/.cache/clipforge/demo: never the working directory unasked). The
report and the printed table show at most `SHOWN` images (all of them are in results.json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont

from ..data.embedding import embed_images, embed_texts
from ..data.images import ListImages
from ..data.shapes import ShapesClassification, ShapesWorld
from ..evaluate import default_cache_dir
from ..zeroshot import ZeroShotClassifier
from .common import add_model_arguments, load_from_args

HELP = "generate shapes-world images, classify them zero-shot, search them by text, write a PNG report"
SHOWN = 48  # images drawn in the report and printed (8 columns x 6 rows)
COLUMNS = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out-dir",
        "--out",
        dest="out_dir",
        default=None,
        help="output folder: images/, report.png, results.json (default: $CLIPFORGE_CACHE/demo, else "
        "~/.cache/clipforge/demo)",
    )
    parser.add_argument("-n", "--num-images", type=int, default=12, help="shapes-world images to generate (default 12)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated images (default 1)")
    parser.add_argument("--queries", nargs="*", default=None, help="text queries (default: made from the scenes)")
    add_model_arguments(parser, engine=True)


def run(args: argparse.Namespace) -> int:

    if not 1 <= args.num_images <= 512:
        raise ValueError("--num-images must be between 1 and 512")
    out = Path(args.out_dir) if args.out_dir else default_cache_dir("demo")
    (out / "images").mkdir(parents=True, exist_ok=True)
    model, preprocess, tokenizer = load_from_args(args)
    world = ShapesWorld(
        seed=args.seed,
        image_size=model.config.vision.image_size,
        split="test",
        size=args.num_images,
        object_counts=(1.0,),
    )
    samples = [world.sample(i) for i in range(args.num_images)]
    paths = []
    for i, s in enumerate(samples):
        paths.append(out / "images" / f"{i:03d}.png")
        s.image.save(paths[-1])

    images = ListImages([s.image for s in samples])
    embedded = embed_images(model, preprocess, images, num_workers=0, normalize=True, progress=False)
    feats = torch.from_numpy(embedded.features)
    results = []
    heads = {}
    for task in ("shape", "colour"):
        view = ShapesClassification(world, task=task)
        heads[task] = (ZeroShotClassifier.build(model, tokenizer, view.classnames, list(view.templates)), view)
    for i, s in enumerate(samples):
        row: dict[str, Any] = {"image": str(paths[i]), "caption": s.caption}
        for task, (clf, view) in heads.items():
            probs = clf.probabilities(feats[i : i + 1])[0]
            k = int(probs.argmax())
            row[task] = {
                "predicted": clf.classnames[k],
                "probability": round(float(probs[k]), 4),
                "true": view.classnames[view.target(i)],
            }
        results.append(row)

    queries = args.queries or _default_queries(samples)
    q = torch.from_numpy(embed_texts(model, tokenizer, queries, normalize=True, progress=False))
    sims = q @ feats.t()
    top = sims.topk(min(3, len(samples)), dim=1)
    retrieval = [
        {
            "query": text,
            "top": [{"image": str(paths[j]), "score": round(float(v), 4)} for v, j in zip(vals.tolist(), idx.tolist())],
        }
        for text, vals, idx in zip(queries, top.values, top.indices)
    ]

    print(f"zero-shot classification of {len(samples)} shapes-world images ({model.config.name or 'model'}):")
    for row in results[:SHOWN]:
        marks = "  ".join(
            f"{t}: {row[t]['predicted']:8s} {row[t]['probability']:6.1%} "
            f"{'ok' if row[t]['predicted'] == row[t]['true'] else 'x (' + row[t]['true'] + ')'}"
            for t in heads
        )
        print(f"  {Path(row['image']).name}  {marks}")
    if len(results) > SHOWN:
        print(f"  ... and {len(results) - SHOWN} more (all in results.json)")
    acc = {t: sum(r[t]["predicted"] == r[t]["true"] for r in results) / len(results) for t in heads}
    print(
        "accuracy: " + ", ".join(f"{t} {a:.0%} (chance {1 / len(heads[t][0].classnames):.0%})" for t, a in acc.items())
    )
    print("text -> image retrieval:")
    for r in retrieval:
        print(f"  {r['query']!r}: " + ", ".join(f"{Path(t['image']).name} ({t['score']:.2f})" for t in r["top"]))
    (out / "results.json").write_text(
        json.dumps({"classification": results, "accuracy": acc, "retrieval": retrieval}, indent=2) + "\n"
    )
    report = _plot(samples, results, retrieval, paths, out / "report.png")
    print(f"wrote {out / 'results.json'} and {report}")
    return 0


def _default_queries(samples) -> list[str]:
    seen, queries = set(), []
    for s in samples:
        o = s.objects[0]
        text = f"a {o.colour} {o.shape}."
        if text not in seen:
            seen.add(text)
            queries.append(text)
    return queries[:4]


def _plot(samples, results, retrieval, paths, path: Path, tile: int = 128) -> Path:
    """A PNG contact sheet drawn with Pillow (no plotting dependency): the first `SHOWN` images in a grid
    of `COLUMNS`, each labelled with its prediction (and, when wrong, the true class), then one row per
    text query with its top images."""

    font = ImageFont.load_default(size=13) if hasattr(ImageFont, "load_default") else None
    shown = min(len(samples), SHOWN)
    label_h, cols = 34, min(shown, COLUMNS)
    rows = -(-shown // cols)
    k = len(retrieval[0]["top"]) if retrieval else 0
    width = tile * max(cols, k + 2)
    height = 30 + rows * (tile + label_h) + 30 + len(retrieval) * (tile + label_h)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    title = "zero-shot labels (green = right, red = wrong, with the true class below)"
    if shown < len(samples):
        title += f"; the first {shown} of {len(samples)} images (all in results.json)"
    draw.text((6, 8), title, fill="black", font=font)
    for i, (s, r) in enumerate(zip(samples[:shown], results)):
        x, y = (i % cols) * tile, 30 + (i // cols) * (tile + label_h)
        sheet.paste(s.image.resize((tile - 8, tile - 8), Image.Resampling.NEAREST), (x + 4, y))
        ok = all(r[t]["predicted"] == r[t]["true"] for t in ("shape", "colour"))
        text = f"{r['colour']['predicted']} {r['shape']['predicted']}"
        draw.text((x + 4, y + tile - 6), text, fill=(0, 130, 0) if ok else (200, 0, 0), font=font)
        if not ok:
            truth = f"true: {r['colour']['true']} {r['shape']['true']}"
            draw.text((x + 4, y + tile + 9), truth, fill=(90, 90, 90), font=font)
    y0 = 30 + rows * (tile + label_h)
    draw.text((6, y0 + 8), "text -> image retrieval (top matches, cosine similarity)", fill="black", font=font)
    index = {str(p): i for i, p in enumerate(paths)}
    for qi, r in enumerate(retrieval):
        y = y0 + 30 + qi * (tile + label_h)
        draw.text((6, y + tile // 2 - 8), r["query"], fill="black", font=font)
        for j, t in enumerate(r["top"]):
            x = (j + 2) * tile
            sheet.paste(
                samples[index[t["image"]]].image.resize((tile - 8, tile - 8), Image.Resampling.NEAREST), (x + 4, y)
            )
            draw.text((x + 4, y + tile - 6), f"{t['score']:.2f}", fill="black", font=font)
    sheet.save(path)
    return path
