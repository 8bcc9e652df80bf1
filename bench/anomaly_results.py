"""Anomaly detection on the shapes world's anomaly parts: WinCLIP (zero-shot), WinCLIP+ and the
PatchCore baseline at 1/2/4 shots, per category, with the default model.

    python bench/anomaly_results.py                                   # the embedded default model
    python bench/anomaly_results.py --model RUN/final --docs docs/anomaly.md

writes bench/results/anomaly_results.json (+ anomaly_examples_METHOD.png) and, with --docs,
replaces the section between `<!-- anomaly-results:start/end -->` markers. WinCLIP embeds each
test image's views once; the 0/1/2/4-shot scores reuse them with each memory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from clipforge.data.shapes.anomaly import ANOMALY_CATEGORIES, write_anomaly_dataset  # noqa: E402
from common import (  # noqa: E402
    RESULTS_DIR,
    load_average,
    machine_info,
    markdown_table,
    replace_doc_section,
    write_json,
)

import clipforge  # noqa: E402
from clipforge.anomaly.patchcore import PatchCore  # noqa: E402
from clipforge.anomaly.winclip import WinCLIP  # noqa: E402
from clipforge.data.anomaly import AnomalySet  # noqa: E402
from clipforge.evaluate.anomaly import choose_shots, mean_row, score_category  # noqa: E402
from clipforge.evaluate.plots import plot_anomaly  # noqa: E402
from clipforge.images import load_image  # noqa: E402


class CachedViews:
    """A scorer for `score_category` that reads precomputed WinCLIP views in order."""

    def __init__(self, method: WinCLIP, views: dict[str, torch.Tensor]) -> None:
        self.method, self.views, self.offset = method, views, 0

    def __call__(self, images):
        part = {k: v[self.offset : self.offset + len(images)] for k, v in self.views.items()}
        self.offset += len(images)
        return self.method.score_views(part)


def _images(paths):
    return [load_image(p).convert("RGB") for p in paths]


def run_category(root: Path, category: str, model, tokenizer, shots: list[int], stride: int, seed: int):
    dataset = AnomalySet(root, category=category)
    test = _images(item.path for item in dataset.split("test"))
    results = []
    winclip = WinCLIP(model, tokenizer, category, window_stride=stride)
    start = time.perf_counter()
    views = winclip.views(test)
    embed_seconds = time.perf_counter() - start
    for k in shots:
        winclip.memory, winclip.shots = {}, 0
        if k:
            winclip.fit(_images(choose_shots(dataset, k, seed)))
        results.append(score_category(dataset, winclip, CachedViews(winclip, views), progress=False))
        results[-1].metrics["images_per_s"] = len(test) / embed_seconds  # the views are the cost
        if k:
            patchcore = PatchCore(model, tokenizer, category).fit(_images(choose_shots(dataset, k, seed)))
            results.append(score_category(dataset, patchcore, progress=False))
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="checkpoint (default: the embedded default model)")
    p.add_argument("--categories", nargs="+", default=list(ANOMALY_CATEGORIES))
    p.add_argument("--shots", nargs="+", type=int, default=[0, 1, 2, 4])
    p.add_argument("--window-stride", type=int, default=1, help="WinCLIP window stride in cells (default 1)")
    p.add_argument("--n-train", type=int, default=8)
    p.add_argument("--n-test-good", type=int, default=10)
    p.add_argument("--n-test-per-defect", type=int, default=4)
    p.add_argument("--seed", type=int, default=0, help="seed of the data and of the choice of shots")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="anomaly_results.json")
    p.add_argument("--docs", default=None, help="a Markdown file whose anomaly-results section is replaced")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, _, tokenizer = clipforge.load(args.model, device="cpu")
    rows: list[Any] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = write_anomaly_dataset(
            Path(tmp) / "parts", args.categories, n_train=args.n_train, n_test_good=args.n_test_good,
            n_test_per_defect=args.n_test_per_defect, seed=args.seed,
        )
        for category in args.categories:
            found = run_category(root, category, model, tokenizer, args.shots, args.window_stride, args.seed)
            rows += found
            for r in found:
                m = r.metrics
                print(f"{category:10s} {r.method:9s} {r.shots}-shot  image AUROC {m['image_auroc']:.3f}  "
                      f"pixel AUROC {m['pixel_auroc']:.3f}  AUPRO {m['pixel_aupro']:.3f}  "
                      f"{m['images_per_s']:.1f} img/s")
    results = [r.row() for r in rows]
    configs = sorted({(r.method, r.shots) for r in rows}, key=lambda c: (c[0] != "winclip", c[1]))
    means = {f"{m}/{k}": mean_row([r for r in rows if (r.method, r.shots) == (m, k)]) for m, k in configs}
    speed = {m: float(np.median([r.metrics["images_per_s"] for r in rows if r.method == m])) for m, _ in configs}
    for method in speed:
        examples = next(r for r in rows if r.method == method and r.shots == max(args.shots)).examples
        plot_anomaly(examples, RESULTS_DIR / f"anomaly_examples_{method}.png", f"{method}, {max(args.shots)}-shot")
    data = {
        "model": args.model or "embedded default model",
        "window_stride": args.window_stride,
        "data": {"categories": args.categories, "n_train": args.n_train, "n_test_good": args.n_test_good,
                 "n_test_per_defect": args.n_test_per_defect, "seed": args.seed},
        "results": results,
        "means": means,
        "images_per_s": speed,
        "machine": machine_info(),
        "load": load_average(),
    }
    path = write_json(data, args.out)
    label = {"winclip": "WinCLIP", "patchcore": "PatchCore"}

    def name(method: str, k: int) -> str:
        return f"{label[method]}{'+' if method == 'winclip' and k else ''}, {k}-shot"

    def cell(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}"

    tables = []
    for metric in ("image_auroc", "pixel_auroc"):
        header = ["method", *args.categories, "mean"]
        body = [[name(m, k), *(cell(next(r.metrics[metric] for r in rows if (r.method, r.shots, r.category) ==
                 (m, k, c))) for c in args.categories), cell(means[f"{m}/{k}"][metric])] for m, k in configs]
        tables.append(f"{metric.replace('_', ' ').replace('auroc', 'AUROC')}:\n\n{markdown_table(header, body)}")
    header = ["method", "image AUROC", "image AP", "image F1-max", "pixel AUROC", "pixel AUPRO"]
    keys = ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_aupro")
    tables.append("means over categories:\n\n" + markdown_table(
        header, [[name(m, k), *(cell(means[f"{m}/{k}"][key]) for key in keys)] for m, k in configs]))
    n_test = args.n_test_good + 5 * args.n_test_per_defect
    model_flag = f" --model {args.model}" if args.model else ""
    cmd = f"python bench/anomaly_results.py{model_flag} --docs docs/anomaly.md"
    text = (
        f"Model: {data['model']}; {len(args.categories)} categories, {n_test} test images each "
        f"({args.n_test_good} good, {args.n_test_per_defect} per defect type), shots drawn from {args.n_train} "
        f"normal training images (seed {args.seed}); WinCLIP window stride {args.window_stride}. Regenerate: "
        f"`{cmd}`.\n\n" + "\n\n".join(tables) + "\n\n"
        f"Speed (images scored per second, {data['machine'].get('cpu', '?')}, {args.threads} threads, median over "
        f"categories): " + ", ".join(f"{label[m]} {v:.1f}" for m, v in speed.items()) + "."
    )
    print(text)
    if args.docs:
        replace_doc_section(args.docs, "anomaly-results", text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
