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
from common import (  # noqa: E402
    RESULTS_DIR,
    load_average,
    machine_info,
    markdown_table,
    replace_doc_section,
    write_json,
)

import clipforge  # noqa: E402
from clipforge.anomaly import AnomalyCLIP, PatchCore, WinCLIP  # noqa: E402
from clipforge.data.anomaly import AnomalySet  # noqa: E402
from clipforge.data.shapes.anomaly import ANOMALY_CATEGORIES, write_anomaly_dataset  # noqa: E402
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
    return [load_image(p) for p in paths]


def run_category(dataset: AnomalySet, views, model, tokenizer, shots: list[int], stride: int, seed: int):
    """WinCLIP at every shot count (one embedding pass: `views`) and PatchCore at every positive one."""
    results = []
    winclip = WinCLIP(model, tokenizer, str(dataset.category), window_stride=stride)
    for k in shots:
        winclip.forget_shots()
        if k:
            winclip.fit(_images(choose_shots(dataset, k, seed)))
        results.append(score_category(dataset, winclip, CachedViews(winclip, views), progress=False))
        if k:
            patchcore = PatchCore(model, tokenizer, str(dataset.category)).fit(_images(choose_shots(dataset, k, seed)))
            results.append(score_category(dataset, patchcore, progress=False))
    return results


def run_anomalyclip(datasets, views, model, tokenizer, train: list[str], stride: int, steps: int):
    """AnomalyCLIP prompts trained on the test splits of `train` categories, scored zero-shot on the others."""
    method = AnomalyCLIP(model, tokenizer, window_stride=stride)
    masks, parts = [], []
    for name in train:
        d = datasets[name]
        masks += [d.mask("test", i) for i in range(len(d.split("test")))]
        parts.append(views[name])
    joined = {k: torch.cat([v[k] for v in parts]) for k in parts[0]}
    losses = method.train_prompts([None] * len(masks), masks, steps=steps, categories=train, views=joined,
                                  progress=False)
    held_out = [name for name in datasets if name not in train]
    rows = [score_category(datasets[n], method, CachedViews(method, views[n]), progress=False) for n in held_out]
    return rows, {"train_categories": train, "steps": steps, "loss_first": losses[0], "loss_last": losses[-1]}


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
    p.add_argument("--anomalyclip-train", nargs="+", default=None,
                   help="categories whose annotated test splits train the AnomalyCLIP prompts (default: first half)")
    p.add_argument("--anomalyclip-steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="anomaly_results.json")
    p.add_argument("--docs", default=None, help="a Markdown file whose anomaly-results section is replaced")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, _, tokenizer = clipforge.load(args.model, device="cpu", backend="auto")  # windows: the fast engine
    rows: list[Any] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = write_anomaly_dataset(
            Path(tmp) / "parts", args.categories, n_train=args.n_train, n_test_good=args.n_test_good,
            n_test_per_defect=args.n_test_per_defect, seed=args.seed,
        )
        datasets = {c: AnomalySet(root, category=c) for c in args.categories}
        views, rate = {}, {}
        for c, d in datasets.items():
            probe = WinCLIP(model, tokenizer, c, window_stride=args.window_stride)
            start = time.perf_counter()
            views[c] = probe.views(_images(item.path for item in d.split("test")))
            rate[c] = len(d.split("test")) / (time.perf_counter() - start)
        for c, d in datasets.items():
            found = run_category(d, views[c], model, tokenizer, args.shots, args.window_stride, args.seed)
            for r in found:
                if r.method == "winclip":
                    r.metrics["images_per_s"] = rate[c]  # the views are WinCLIP's cost
            rows += found
        train = args.anomalyclip_train or args.categories[: len(args.categories) // 2]
        if not train or set(train) >= set(args.categories):
            raise SystemExit("AnomalyCLIP needs training categories and held-out ones: pass at least two categories")
        clip_rows, clip_info = run_anomalyclip(
            datasets, views, model, tokenizer, train, args.window_stride, args.anomalyclip_steps
        )
        for r in clip_rows:
            r.metrics["images_per_s"] = rate[r.category]
        rows += clip_rows
        for r in rows:
            m = r.metrics
            print(f"{r.category:10s} {r.method:11s} {r.shots}-shot  image AUROC {m['image_auroc']:.3f}  "
                  f"pixel AUROC {m['pixel_auroc']:.3f}  AUPRO {m['pixel_aupro']:.3f}  "
                  f"{m['images_per_s']:.1f} img/s")
    results = [r.row() for r in rows]
    order = {"winclip": 0, "anomalyclip": 1, "patchcore": 2}
    configs = sorted({(r.method, r.shots) for r in rows}, key=lambda c: (order[c[0]], c[1]))
    means = {f"{m}/{k}": mean_row([r for r in rows if (r.method, r.shots) == (m, k)]) for m, k in configs}
    held_out = [r.category for r in clip_rows]
    means["winclip/0/held-out"] = mean_row([r for r in rows if (r.method, r.shots) == ("winclip", 0)
                                            and r.category in held_out])
    speed = {m: float(np.median([r.metrics["images_per_s"] for r in rows if r.method == m])) for m, _ in configs}
    for method in speed:
        shown = [r for r in rows if r.method == method]
        best = max(shown, key=lambda r: r.shots)
        plot_anomaly(best.examples, RESULTS_DIR / f"anomaly_examples_{method}.png",
                     f"{method}, {best.shots}-shot, {best.category}")
    data = {
        "model": args.model or "embedded default model",
        "window_stride": args.window_stride,
        "data": {"categories": args.categories, "n_train": args.n_train, "n_test_good": args.n_test_good,
                 "n_test_per_defect": args.n_test_per_defect, "seed": args.seed},
        "anomalyclip": {**clip_info, "held_out": held_out},
        "results": results,
        "means": means,
        "images_per_s": speed,
        "machine": machine_info(),
        "load": load_average(),
    }
    path = write_json(data, args.out)
    label = {"winclip": "WinCLIP", "anomalyclip": "AnomalyCLIP", "patchcore": "PatchCore"}

    def name(method: str, k: int) -> str:
        return f"{label[method]}{'+' if method == 'winclip' and k else ''}, {k}-shot"

    def cell(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}"

    def value(m: str, k: int, c: str, metric: str) -> Any:
        return next((r.metrics[metric] for r in rows if (r.method, r.shots, r.category) == (m, k, c)), None)

    tables = []
    for metric in ("image_auroc", "pixel_auroc"):
        header = ["method", *args.categories, "mean"]
        body = [[name(m, k), *(cell(value(m, k, c, metric)) for c in args.categories),
                 cell(means[f"{m}/{k}"][metric])] for m, k in configs]
        tables.append(f"{metric.replace('_', ' ').replace('auroc', 'AUROC')}:\n\n{markdown_table(header, body)}")
    header = ["method", "image AUROC", "image AP", "image F1-max", "pixel AUROC", "pixel AUPRO"]
    keys = ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_aupro")
    mean_rows = [[name(m, k), *(cell(means[f"{m}/{k}"][key]) for key in keys)] for m, k in configs]
    first_clip = next(i for i, (m, _) in enumerate(configs) if m == "anomalyclip")
    mean_rows.insert(first_clip, [f"WinCLIP, 0-shot, on {', '.join(held_out)} only",
                         *(cell(means["winclip/0/held-out"][key]) for key in keys)])
    tables.append("means over categories (AnomalyCLIP: over the categories it never saw):\n\n"
                  + markdown_table(header, mean_rows))
    n_test = args.n_test_good + 5 * args.n_test_per_defect
    cmd = " ".join(["python bench/anomaly_results.py", *sys.argv[1:]])
    text = (
        f"Model: {data['model']}; {len(args.categories)} categories, {n_test} test images each "
        f"({args.n_test_good} good, {args.n_test_per_defect} per defect type), shots drawn from {args.n_train} "
        f"normal training images (seed {args.seed}); WinCLIP window stride {args.window_stride}; AnomalyCLIP's "
        f"prompts trained ({args.anomalyclip_steps} steps) on the annotated test splits of {', '.join(train)} "
        f"and tested on the others. Regenerate: "
        f"`{cmd}`.\n\n" + "\n\n".join(tables) + "\n\n"
        f"Speed (images scored per second, {data['machine'].get('cpu', '?')}, {args.threads} threads, median over "
        f"categories; load average {', '.join(f'{x:.1f}' for x in data['load'])} over 1/5/15 minutes at the end): "
        + ", ".join(f"{label[m]} {v:.1f}" for m, v in speed.items())
        + " (AnomalyCLIP scores from the same views as WinCLIP: the figure is their embedding rate)."
    )
    print(text)
    if args.docs:
        replace_doc_section(args.docs, "anomaly-results", text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
