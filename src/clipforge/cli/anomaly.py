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
from PIL import Image
from tqdm.auto import tqdm

from ..anomaly import ANOMALY_METHODS, AnomalyCLIP, AnomalyMethod, WinCLIP, upsample_map
from ..data.anomaly import AnomalySet, categories
from ..data.images import FileImages, RefImages
from ..data.inputs import item_images, resolve_items
from ..evaluate.anomaly import choose_shots, evaluate_anomaly
from ..files import write_json_atomic
from ..images import ImageDecodeError, SkipLog, load_image
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
    fit.add_argument("--category", nargs="+", default=None, help="anomalyclip: the auxiliary categories (default all)")
    fit.add_argument("--steps", type=int, default=300, help="anomalyclip: prompt-training steps (default 300)")
    fit.add_argument("--normal", nargs="+", default=None, help="normal images or folders (instead of --dataset)")
    fit.add_argument("--shots", type=int, default=None, help="use this many normal images (default: all)")
    fit.add_argument("--seed", type=int, default=0, help="seed of the choice of shots (default 0)")
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


def _check_shots(shots: int | None) -> None:
    if shots is not None and shots < 0:
        raise ValueError(f"--shots must be 0 or more, got {shots}")


def heat_overlay(image: Image.Image, heat: np.ndarray, lo: float, hi: float) -> Image.Image:
    """The image under a jet-coloured heat map (alpha 0.5), scaled from `lo` to `hi`."""
    from matplotlib import colormaps  # the anomaly extra

    scaled = np.clip((heat - lo) / max(hi - lo, 1e-12), 0, 1)
    colour = colormaps["jet"](scaled)[..., :3] * 255
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    return Image.fromarray((0.5 * rgb + 0.5 * colour).clip(0, 255).astype(np.uint8))


def _run_eval(args: argparse.Namespace) -> int:
    _check_shots(args.shots)
    model, _, tokenizer = load_from_args(args)

    def make(category: str) -> AnomalyMethod:
        if args.memory:
            method = AnomalyMethod.load(args.memory, model, tokenizer)
            method.category = category
            if isinstance(method, WinCLIP):
                method.forget_shots()  # a memory's shots belong to its own category; --shots refits
            return method
        return _build(args, model, tokenizer, category)

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
    images, masks, skipped = [], [], SkipLog()
    for name in names:
        dataset = AnomalySet(args.dataset, category=name)
        for index, item in enumerate(dataset.split("test")):
            mask = dataset.mask("test", index)
            if mask is None:
                skipped.add(item.path, "no mask file")
                continue
            images.append(load_image(item.path).convert("RGB"))
            masks.append(mask)
    model, _, tokenizer = load_from_args(args)
    method = _build(args, model, tokenizer, "object")
    assert isinstance(method, AnomalyCLIP)
    losses = method.train_prompts(images, masks, steps=args.steps, categories=names)
    method.save(args.out)
    print(f"trained anomalyclip prompts on {len(images)} annotated images of {', '.join(names)} "
          f"(loss {losses[0]:.3f} → {losses[-1]:.3f}, skipped {skipped.count}); saved to {args.out}")
    return 0


def _run_fit(args: argparse.Namespace) -> int:
    _check_shots(args.shots)
    if args.method == "anomalyclip":
        return _fit_prompts(args)
    if (args.dataset is None) == (args.normal is None):
        raise ValueError("fit needs exactly one of --dataset (a category folder) or --normal (images)")
    skipped = SkipLog()
    if args.dataset is not None:
        dataset = AnomalySet(args.dataset)
        paths = choose_shots(dataset, args.shots or len(dataset.split("train")), args.seed)
        normal, category = _read(FileImages(tuple(paths)), skipped), str(dataset.category)
    else:
        images = item_images(resolve_items(args.normal))
        chosen = RefImages(images.refs[: args.shots or len(images)])
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


def _read(images: FileImages | RefImages, skipped: SkipLog) -> list[tuple[str, Image.Image]]:
    """(name, RGB image) of every readable image; the others are counted in `skipped`."""
    out = []
    for i in tqdm(range(len(images)), desc="reading images", disable=len(images) < 50):
        name = images.name(i) if isinstance(images, RefImages) else str(images.paths[i])
        try:
            out.append((name, images.load(i).convert("RGB")))
        except (ImageDecodeError, OSError) as exc:
            skipped.add(name, exc)
    return out


def _run_score(args: argparse.Namespace) -> int:
    images = item_images(resolve_items(args.images))
    if not len(images):
        raise ValueError("no images found in the given inputs")
    model, _, tokenizer = load_from_args(args)
    if args.memory:
        method = AnomalyMethod.load(args.memory, model, tokenizer)
    else:
        method = _build(args, model, tokenizer, args.object or "object")
        if not method.zero_shot:
            raise ValueError(f"{args.method} needs normal images: run `clipforge anomaly fit` and pass --memory")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    skipped, used = SkipLog(), set[str]()
    rows: list[dict[str, Any]] = []
    loaded = _read(images, skipped)
    for start in tqdm(range(0, len(loaded), 8), desc=f"scoring ({method.name})"):
        batch = loaded[start : start + 8]
        scores = method.score([image for _, image in batch])
        for (source, image), value, score_map in zip(batch, scores.image, scores.maps):
            heat = upsample_map(score_map, (image.height, image.width), method.map_sigma)
            name = Path(source).stem
            name = name if name not in used else f"{name}-{len(rows)}"  # same file names in several folders
            used.add(name)
            overlay = out / f"{name}.heat.png"
            heat_overlay(image, heat, float(heat.min()), float(heat.max())).save(overlay)
            rows.append({"image": source, "score": float(value), "overlay": str(overlay)})
    write_json_atomic(out / "scores.json", {"method": method.name, "shots": method.shots, "scores": rows,
                                            "skipped": [{"image": s, "reason": r} for s, r in skipped.items]})
    for row in sorted(rows, key=lambda r: -float(r["score"]))[:10]:
        print(f"{row['score']:.4f}  {row['image']}")
    print(f"scored {len(rows)} images, skipped {skipped.count}; wrote {out / 'scores.json'}")
    return 0 if rows else 1


def run(args: argparse.Namespace) -> int:
    return {"eval": _run_eval, "fit": _run_fit, "score": _run_score}[args.action](args)

