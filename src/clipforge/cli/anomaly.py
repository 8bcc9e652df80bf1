"""`clipforge anomaly fit|score|eval`: zero- and few-shot anomaly detection and segmentation.

    clipforge anomaly eval --dataset MVTEC_ROOT_OR_CATEGORY --method winclip --shots 1 --out DIR
    clipforge anomaly fit --dataset CATEGORY_DIR --method winclip --shots 4 --out MEMORY_DIR
    clipforge anomaly score IMAGES... --memory MEMORY_DIR --out DIR     (or --method winclip, zero-shot)

`eval` writes `anomaly.json` (metrics per category and their mean: image_auroc, image_ap,
image_f1_max, pixel_auroc, pixel_ap, pixel_aupro) and a PNG grid per category; `score` writes
`scores.json` and a heat-map overlay PNG per image; unreadable images are skipped and counted.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..anomaly import ANOMALY_METHODS, AnomalyCLIP, AnomalyMethod, upsample_map
from ..anomaly.base import heat_overlay
from ..data.anomaly import AnomalySet, categories
from ..data.images import FileImages, RefImages
from ..data.inputs import item_images, resolve_items
from ..evaluate.anomaly import choose_shots, evaluate_anomaly
from ..files import write_json_atomic
from ..images import SkipLog, try_load_image
from .common import add_model_arguments, load_from_args

HELP = "anomaly detection and segmentation: WinCLIP, AnomalyCLIP prompts (zero-shot), WinCLIP+ and PatchCore (few-shot)"


def _method_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--method", choices=ANOMALY_METHODS.list(), default="winclip", help="anomaly method (default winclip)"
    )
    parser.add_argument(
        "--object",
        default=None,
        help="the object's name in WinCLIP's prompts (default: the category folder's name, '_' read as spaces)",
    )
    parser.add_argument(
        "--image-size", type=int, default=None, help="working resolution in pixels (default: twice the model's input)"
    )
    parser.add_argument("--grid", type=int, default=16, help="WinCLIP grid cells per image side (default 16)")
    parser.add_argument(
        "--scales", type=int, nargs="+", default=[3, 5], help="WinCLIP window sizes in grid cells (default 3 5)"
    )
    parser.add_argument(
        "--window-stride", type=int, default=1, help="WinCLIP window stride in grid cells (default 1; 2 is ~4x faster)"
    )
    add_model_arguments(parser, engine=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    ev = sub.add_parser("eval", help="evaluate on an MVTec AD-layout dataset (metrics JSON + PNG grids)")
    ev.add_argument("--dataset", required=True, help="MVTec AD-layout root (CATEGORY/train/good ...) or one category")
    ev.add_argument("--category", nargs="+", default=None, help="categories to evaluate (default: all under --dataset)")
    ev.add_argument("--shots", type=int, default=0, help="normal training images per category (default 0: zero-shot)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the choice of shots (default 0)")
    ev.add_argument("--out", required=True, help="folder for anomaly.json and the PNG grids")
    ev.add_argument("--no-plots", action="store_true", help="skip the PNG grids")
    ev.add_argument(
        "--memory", default=None, help="a folder from `anomaly fit` (AnomalyCLIP prompts, say) instead of --method"
    )
    _method_arguments(ev)
    fit = sub.add_parser("fit", help="fit a few-shot memory on normal images and save it")
    fit.add_argument(
        "--dataset",
        default=None,
        help="one MVTec-layout category (its train/good images are the shots); for anomalyclip, a root whose "
        "--category test splits (images + masks) are the auxiliary training data",
    )
    fit.add_argument(
        "--category",
        nargs="+",
        default=None,
        help="anomalyclip: the auxiliary categories (default all); other methods: the one category of a --dataset root",
    )
    fit.add_argument("--steps", type=int, default=300, help="anomalyclip: prompt-training steps (default 300)")
    fit.add_argument("--normal", nargs="+", default=None, help="normal images or folders (instead of --dataset)")
    fit.add_argument("--shots", type=int, default=None, help="use this many normal images (default: all)")
    fit.add_argument(
        "--seed", type=int, default=0, help="seed choosing the shots from --dataset (default 0; --normal: first N)"
    )
    fit.add_argument("--out", required=True, help="folder for the memory (anomaly.json + memory.safetensors)")
    _method_arguments(fit)
    score = sub.add_parser("score", help="score images: per-image scores and heat-map overlays")
    score.add_argument("images", nargs="+", help="image files, folders, glob patterns, or one CSV manifest")
    score.add_argument("--memory", default=None, help="a folder written by `anomaly fit` (default: zero-shot)")
    score.add_argument("--out", required=True, help="folder for scores.json and NAME.heat.png overlays")
    _method_arguments(score)


def _build(args: argparse.Namespace, model: Any, tokenizer: Any, category: str) -> AnomalyMethod:
    options: dict[str, Any] = {"image_size": args.image_size}
    if args.method in ("winclip", "anomalyclip"):
        options.update(object_name=args.object, grid=args.grid, scales=args.scales, window_stride=args.window_stride)
    return ANOMALY_METHODS.create(args.method, model, tokenizer, category, **options)


def _untrained_refused(method: AnomalyMethod) -> AnomalyMethod:
    if isinstance(method, AnomalyCLIP) and not method.trained:
        raise ValueError("anomalyclip needs trained prompts: run `clipforge anomaly fit --method anomalyclip "
                         "--dataset AUX_ROOT --out PROMPTS` and pass --memory PROMPTS")
    return method


def _check_shots(shots: int | None) -> None:
    if shots is not None and shots < 0:
        raise ValueError(f"--shots must be 0 or more, got {shots}")


def _run_eval(args: argparse.Namespace) -> int:
    _check_shots(args.shots)
    model, _, tokenizer = load_from_args(args)

    def make(category: str) -> AnomalyMethod:
        if args.memory:
            method = AnomalyMethod.load(args.memory, model, tokenizer)
            if not isinstance(method, AnomalyCLIP):
                raise ValueError(f"{args.memory}: eval --memory takes AnomalyCLIP prompts (they fit any object); "
                                 f"a {method.name} memory belongs to its own category: use --method and --shots")
            method.category = category  # the prompts are object-agnostic; --shots fits WinCLIP+ memories on top
            return method
        return _untrained_refused(_build(args, model, tokenizer, category))

    report = evaluate_anomaly(
        args.dataset,
        make,
        args.out,
        shots=args.shots,
        category_names=args.category,
        seed=args.seed,
        plots=not args.no_plots,
    )
    print(f"{'category':16s} {'img AUROC':>9s} {'img AP':>7s} {'F1-max':>7s} {'px AUROC':>8s} {'AUPRO':>6s}")
    for row in [*report["categories"], report["mean"]]:
        cells = [row.get(k) for k in ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_aupro")]
        text = " ".join(f"{'-' if v is None else f'{v:.3f}':>{w}s}" for v, w in zip(cells, (9, 7, 7, 8, 6)))
        print(f"{row['category']:16s} {text}")
    print(f"wrote {Path(args.out) / 'anomaly.json'}")
    return 0


def _fit_prompts(args: argparse.Namespace) -> int:
    """AnomalyCLIP: train the object-agnostic prompts on annotated auxiliary categories."""
    if args.dataset is None:
        raise ValueError("anomalyclip trains on annotated data: pass --dataset ROOT [--category A B ...]")
    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    names = args.category or categories(args.dataset)
    model, _, tokenizer = load_from_args(args)
    method = _build(args, model, tokenizer, "object")
    assert isinstance(method, AnomalyCLIP)
    size = method.options["image_size"]
    masks, views, skipped = [], [], SkipLog()
    for name in names:  # one category's images at a time; masks kept at the working resolution
        dataset = AnomalySet(args.dataset, category=name)
        images = []
        for index, item in enumerate(dataset.split("test")):
            mask = dataset.mask("test", index)
            image = try_load_image(item.path, skipped) if mask is not None else None
            if mask is None:
                skipped.add(item.path, "no mask file")
            if image is None or mask is None:
                continue
            images.append(image)
            masks.append(np.asarray(Image.fromarray(mask).resize((size, size), Image.Resampling.NEAREST)))
        if images:
            views.append(method.views(images))
    if not views:
        raise ValueError(f"{args.dataset}: no annotated test images in {', '.join(names)}")
    joined = {key: torch.cat([v[key] for v in views]) for key in views[0]}
    losses = method.train_prompts([None] * len(masks), masks, steps=args.steps, categories=names, views=joined)
    method.save(args.out)
    print(f"trained anomalyclip prompts on {len(masks)} annotated images of {', '.join(names)} "
          f"(loss {losses[0]:.3f} → {losses[-1]:.3f}, skipped {skipped.count}); saved to {args.out}")
    return 0


def _run_fit(args: argparse.Namespace) -> int:
    _check_shots(args.shots)
    if args.method == "anomalyclip":
        return _fit_prompts(args)
    if (args.dataset is None) == (args.normal is None):
        raise ValueError("fit needs exactly one of --dataset (a category folder) or --normal (images)")
    if args.shots == 0:
        raise ValueError("fit needs at least one normal image: --shots 1 or more (or leave it out: all of them)")
    skipped = SkipLog()
    if args.dataset is not None:
        if args.category and len(args.category) > 1:
            raise ValueError("fit makes one category's memory: pass one --category")
        dataset = AnomalySet(args.dataset, category=args.category[0] if args.category else None)
        paths = choose_shots(dataset, args.shots or len(dataset.split("train")), args.seed)
        normal, category = _read(FileImages(tuple(paths)), skipped), str(dataset.category)
    else:
        images = item_images(resolve_items(args.normal, skipped=skipped))
        if args.shots and args.shots > len(images):
            raise ValueError(f"--shots {args.shots} asked, but --normal holds {len(images)} images")
        chosen = RefImages(images.refs[: args.shots or len(images)])  # the first N, in name order
        normal, category = _read(chosen, skipped), args.object or "object"
    if not normal:
        raise ValueError(f"fit: no readable normal images (skipped {skipped.count})")
    model, _, tokenizer = load_from_args(args)
    method = _build(args, model, tokenizer, category)
    method.fit([image for _, image in normal])
    method.save(args.out)
    print(f"fitted {method.name} on {len(normal)} normal images of {category!r} (skipped {skipped.count}); "
          f"saved to {args.out}")
    return 0


def _read(
    images: FileImages | RefImages, skipped: SkipLog, indices: range | None = None
) -> list[tuple[int, Image.Image]]:
    """(index, RGB image) of every readable image (of `indices`, default all); the others go to `skipped`."""
    out = []
    indices = range(len(images)) if indices is None else indices
    for i in tqdm(indices, desc="reading images", disable=len(indices) < 50):
        if isinstance(images, FileImages):
            image = try_load_image(images.paths[i], skipped)
        else:
            try:
                image = images.load(i)
            except (ValueError, OSError) as exc:  # ImageDecodeError is a ValueError
                skipped.add(images.name(i), exc)
                image = None
        if image is not None:
            out.append((i, image))
    return out


def _run_score(args: argparse.Namespace) -> int:
    skipped = SkipLog()
    images = item_images(resolve_items(args.images, skipped=skipped))
    if not len(images):
        raise ValueError("no images found in the given inputs")
    model, _, tokenizer = load_from_args(args)
    if args.memory:
        method = AnomalyMethod.load(args.memory, model, tokenizer)
    else:
        method = _untrained_refused(_build(args, model, tokenizer, args.object or "object"))
        if not method.zero_shot:
            raise ValueError(f"{args.method} needs normal images: run `clipforge anomaly fit` and pass --memory")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scored: list[tuple[int, float, Any]] = []  # (index, score, map on the method's grid): small
    for start in tqdm(range(0, len(images), 8), desc=f"scoring ({method.name})"):
        batch = _read(images, skipped, range(start, min(start + 8, len(images))))
        if batch:
            result = method.score([image for _, image in batch])
            scored += [(i, float(v), m) for (i, _), v, m in zip(batch, result.image, result.maps)]
    lo = min((float(m.min()) for _, _, m in scored), default=0.0)
    hi = max((float(m.max()) for _, _, m in scored), default=1.0)
    rows: list[dict[str, Any]] = []
    used: set[str] = set()
    for i, value, score_map in tqdm(scored, desc="writing overlays", disable=len(scored) < 50):
        image = images.load(i)
        heat = upsample_map(score_map, (image.height, image.width), method.map_sigma)
        name = Path(images.name(i)).stem
        name = name if name not in used else f"{name}-{i}"  # same file names in several folders
        used.add(name)
        overlay = out / f"{name}.heat.png"
        heat_overlay(image, heat, lo, hi).save(overlay)  # one colour scale for the whole run
        rows.append({"image": images.name(i), "score": value, "overlay": str(overlay)})
    write_json_atomic(out / "scores.json", {"method": method.name, "shots": method.shots, "scores": rows,
                                            "map_range": [lo, hi],
                                            "skipped": [{"image": s, "reason": r} for s, r in skipped.items]})
    for row in sorted(rows, key=lambda r: -float(r["score"]))[:10]:
        print(f"{row['score']:.4f}  {row['image']}")
    print(f"scored {len(rows)} images, skipped {skipped.count}; wrote {out / 'scores.json'}")
    return 0 if rows else 1


def run(args: argparse.Namespace) -> int:
    return {"eval": _run_eval, "fit": _run_fit, "score": _run_score}[args.action](args)

