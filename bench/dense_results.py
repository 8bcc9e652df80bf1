"""Zero-shot segmentation on the shapes world's masks: every dense readout side by side, and the
cost of `encode_dense` next to `encode_image`.

    python bench/dense_results.py                                  # the embedded default model
    python bench/dense_results.py --model RUN/final --docs docs/dense.md

writes bench/results/dense_results.json (+ dense_examples.png: image / truth / prediction per
method) and, with --docs, replaces the table between `<!-- dense-results:start/end -->` markers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS_DIR, load_average, machine_info, markdown_table, replace_doc_section, write_json  # noqa: E402

import clipforge  # noqa: E402
from clipforge.data.masks import open_mask_source  # noqa: E402
from clipforge.dense import METHODS, RESNET_METHODS, encode_dense, output_stride, segment_dataset  # noqa: E402
from clipforge.model.vision import VisionTransformer  # noqa: E402


def speed(model, repeats: int, batch: int = 32) -> dict[str, float]:
    """Median images/s of encode_image and of encode_dense (maskclip) on one batch at the model's size."""
    size = model.config.vision.image_size
    pixels = torch.randn(batch, 3, size, size)
    out = {}
    calls = {"encode_image": lambda: model.encode_image(pixels), "encode_dense": lambda: encode_dense(model, pixels)}
    for name, fn in calls.items():
        with torch.no_grad():
            fn()
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
        out[name] = round(batch / statistics.median(times), 1)
    out["dense_over_image_time"] = round(out["encode_image"] / out["encode_dense"], 3)
    return out


def plot_examples(runs, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(len(r.examples) for r in runs)
    fig, axes = plt.subplots(n, 2 + len(runs), figsize=(1.6 * (2 + len(runs)), 1.6 * n), squeeze=False)
    k = len(runs[0].classnames)
    for row in range(n):
        image, truth, _ = runs[0].examples[row]
        cells = [("image", image, None), ("truth", truth, k)] + [(r.method, r.examples[row][2], k) for r in runs]
        for col, (title, data, classes) in enumerate(cells):
            ax = axes[row][col]
            ax.imshow(data, cmap=None if classes is None else "tab10", vmin=0, vmax=9, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="checkpoint (default: the embedded default model)")
    p.add_argument("--datasets", nargs="+", default=["shapes:seg:test:200", "shapes:seg:test:200?variety=rich"])
    p.add_argument("--templates", default="openai")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="dense_results.json")
    p.add_argument("--docs", default=None, help="a Markdown file whose dense-results section is replaced")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, _, tokenizer = clipforge.load(args.model, device="cpu", backend="none")
    methods = METHODS if isinstance(model.visual, VisionTransformer) else RESNET_METHODS
    rows, results, first_runs = [], [], []
    for spec in args.datasets:
        source = open_mask_source(spec)
        runs = [segment_dataset(model, tokenizer, source, m, args.templates, progress=False) for m in methods]
        first_runs = first_runs or runs
        for r in runs:
            results.append({"dataset": spec, "method": r.method, **r.summary, "seconds": round(r.seconds, 2)})
            m = r.summary
            rows.append([spec, r.method, f"{m['miou']:.3f}", f"{m['pixel_accuracy']:.3f}", m["images"]])
    png = RESULTS_DIR / "dense_examples.png"
    plot_examples(first_runs, png)
    data = {
        "model": args.model or "embedded default model",
        "grid": [model.config.vision.image_size // output_stride(model)] * 2,
        "classes": first_runs[0].classnames,
        "results": results,
        "speed": speed(model, args.repeats),
        "machine": machine_info(),
        "load": load_average(),
    }
    path = write_json(data, args.out)
    table = markdown_table(["dataset", "method", "mIoU", "pixel acc.", "images"], rows)
    s = data["speed"]
    text = (
        f"Model: {data['model']} (dense grid {data['grid'][0]}×{data['grid'][1]}); {len(data['classes'])} classes "
        f"with background; templates {args.templates}. Regenerate: `python bench/dense_results.py"
        f"{' --model ' + args.model if args.model else ''} --docs docs/dense.md`.\n\n{table}\n\n"
        f"Speed (batch 32, {data['machine'].get('cpu', '?')}, {args.threads} threads, median of {args.repeats}): "
        f"encode_image {s['encode_image']} img/s, encode_dense {s['encode_dense']} img/s."
    )
    print(text)
    if args.docs:
        replace_doc_section(args.docs, "dense-results", text)
    print(f"wrote {path} and {png}")


if __name__ == "__main__":
    main()
