"""The embedded models' zero-shot accuracy, segmentation mIoU, size and load time, side by side
against the targets the default model is held to.

    python bench/default_model_results.py                       # default and default-rn
    python bench/default_model_results.py --models default RUN/final     # a candidate beside it (no --docs)

writes bench/results/default_model_results.json and, with --docs, replaces the `default-model`
table in README.md, docs/shapes.md and the default model's TRAINING.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import load_average, machine_info, markdown_table, replace_doc_section, write_json  # noqa: E402

import clipforge  # noqa: E402
from clipforge.api import DEFAULT_MODEL_DIR, resolve_model_path  # noqa: E402
from clipforge.data.masks import open_mask_source  # noqa: E402
from clipforge.dense import RESNET_METHODS, SegmentationScores, dense_pixels, segment, segment_dataset  # noqa: E402
from clipforge.evaluate import evaluate  # noqa: E402
from clipforge.model.vision import VisionTransformer  # noqa: E402
from clipforge.zeroshot import classifier_weights, resolve_templates  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: (row label, evaluation dataset, target top-1 or None).
ZERO_SHOT = [
    ("shape, 8 classes", "shapes:shape", 0.92),
    ("colour, 8 classes", "shapes:colour", 0.98),
    ("shape + colour, 64 classes (seen pairs)", "shapes:shape_colour", 0.85),
    ("shape + colour, held-out pairs", "shapes:shape_colour:test_compositional", 0.75),
    ("shape, held-out drawing styles (rich)", "shapes:shape:test_style?variety=rich", 0.85),
    ("shape, rich variety (seen styles)", "shapes:shape?variety=rich", None),
]
SEGMENTATION = [("classic", "shapes:seg:test:200"), ("rich", "shapes:seg:test:200?variety=rich")]
#: Dense readouts measured: MaskCLIP's (any tower) and the plain patch tokens (ViTs).
READOUTS = ("maskclip", "naive")
DOCS = [ROOT / "README.md", ROOT / "docs" / "shapes.md", DEFAULT_MODEL_DIR / "TRAINING.md"]


def object_pixel_accuracy(model, tokenizer, spec: str, readout: str) -> float:
    """Share of object pixels whose best shape class (a dense readout over the shapes only) is their own.

    Unlike mIoU it needs no background rule: the shapes world's words do not include "background",
    so a background prompt means nothing to its models and a cosine threshold is model-specific.
    """
    source = open_mask_source(spec)
    weights = classifier_weights(model, tokenizer, list(source.classnames[1:]), resolve_templates("openai"))
    scores = SegmentationScores(len(source.classnames))
    for i in range(len(source)):
        image, truth, _ = source.load(i)
        with torch.no_grad():
            # a threshold below any cosine: every pixel gets its best shape (labels numbered from 1)
            labels = segment(model, dense_pixels(model, image), weights, readout, -2.0, truth.shape)[0]
        scores.update(labels[0].numpy(), truth)
    confusion = scores.confusion[1:]  # truth rows of the object classes (ignored pixels are not counted)
    return float(confusion.trace(offset=1) / max(confusion.sum(), 1))


def measure(spec: str, samples: int, repeats: int) -> dict:
    """Every figure of one model: zero-shot top-1 per task, mIoU per mask set, size and load time."""
    model, preprocess, tokenizer = clipforge.load(spec, device="cpu", backend="none")
    loaded = (model, preprocess, tokenizer)
    top1, masks = {}, [d for _, d in SEGMENTATION]
    for _, dataset, _ in ZERO_SHOT:
        (out,) = evaluate("zeroshot", dataset, loaded, out_dir=None, split="test", max_samples=samples, progress=False)
        top1[dataset] = out.result.metrics["top1"]
    readouts = [r for r in READOUTS if isinstance(model.visual, VisionTransformer) or r in RESNET_METHODS]
    miou, object_accuracy = {}, {}
    for readout in readouts:
        for d in masks:
            run = segment_dataset(model, tokenizer, open_mask_source(d), readout, progress=False)
            miou[f"{readout} {d}"] = run.summary["miou"]
            object_accuracy[f"{readout} {d}"] = object_pixel_accuracy(model, tokenizer, d, readout)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        clipforge.load(spec, device="cpu", backend="none")
        times.append(time.perf_counter() - start)
    weights = Path(resolve_model_path(spec)) / "model.safetensors"
    return {
        "model": spec,
        "architecture": model.config.name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "megabytes": round(weights.stat().st_size / 1e6, 1) if weights.exists() else None,
        "load_seconds": round(statistics.median(times), 3),
        "top1": top1,
        "miou": miou,
        "object_pixel_accuracy": object_accuracy,
    }


def table(results: list[dict], samples: int) -> str:
    header = ["task", "target"] + [f"`{r['model']}` ({r['architecture']})" for r in results]
    rows = [[label, f"≥ {t:.2f}" if t else "", *(f"{r['top1'][d]:.3f}" for r in results)] for label, d, t in ZERO_SHOT]
    for key, what in (("object_pixel_accuracy", "object-pixel shape accuracy"), ("miou", "mIoU")):
        for readout in READOUTS:
            for name, d in SEGMENTATION:
                cells = [f"{r[key][f'{readout} {d}']:.3f}" if f"{readout} {d}" in r[key] else "—" for r in results]
                rows.append([f"{what}, {readout} readout ({name})", "", *cells])
    rows.append(["size (fp32 safetensors on disk, MB)", "≤ 25", *(str(r["megabytes"]) for r in results)])
    rows.append(["load time (s, median)", "< 1", *(f"{r['load_seconds']:.2f}" for r in results)])
    specs = " ".join(r["model"] for r in results)
    return (
        f"Zero-shot top-1 on {samples} test images per task (prompt ensembles of each task's templates); "
        f"dense readouts (MaskCLIP's; naive: the plain patch tokens) on 200 mask images "
        f"(8 shapes + background; object-pixel accuracy: the share of "
        f"object pixels whose best of the 8 shape prompts is their shape, chance 0.125; mIoU with a "
        f"'background' prompt, a word these models never saw). Regenerate: "
        f"`python bench/default_model_results.py --models {specs} --docs`.\n\n" + markdown_table(header, rows)
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["default", "default-rn"], help="embedded names or checkpoints")
    p.add_argument("--samples", type=int, default=500, help="test images per zero-shot task")
    p.add_argument("--repeats", type=int, default=5, help="timed loads per model")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--docs", action="store_true", help="replace the tables in README, shapes.md, TRAINING.md")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results = [measure(spec, args.samples, args.repeats) for spec in args.models]
    text = table(results, args.samples)
    data = {"results": results, "machine": machine_info(), "load": load_average()}
    path = write_json(data, "default_model_results.json")
    print(text)
    if args.docs:
        for doc in DOCS:
            replace_doc_section(doc, "default-model", text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
