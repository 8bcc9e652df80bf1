"""Generation speed of the shapes world per drawing variety (one process, one thread).

    python bench/bench_shapes.py [--images 300] [--repeats 3] [--size 64]

writes bench/results/shapes_speed.json: images/s (median of the repeats) of `ShapesWorld.sample`
for each variety, and each variety's ratio to classic; and of `anomaly_sample` (the anomaly parts),
good and with a defect (the defects in turn), at the same size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import load_average, machine_info, markdown_table, write_json  # noqa: E402

from clipforge.data.shapes import VARIETIES, ShapesWorld  # noqa: E402
from clipforge.data.shapes.anomaly import ANOMALY_CATEGORIES, DEFECTS, anomaly_sample  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--size", type=int, default=64)
    args = p.parse_args()
    torch.set_num_threads(1)
    parts = {"anomaly parts, good": None, "anomaly parts, defect": DEFECTS}
    rates: dict[str, list[float]] = {v: [] for v in (*VARIETIES, *parts)}
    for _ in range(args.repeats):  # interleaved, so load changes hit every variety alike
        for variety in VARIETIES:
            world = ShapesWorld(split="train", image_size=args.size, size=args.images, variety=variety)
            start = time.perf_counter()
            for i in range(args.images):
                world.sample(i)
            rates[variety].append(args.images / (time.perf_counter() - start))
        for name, defects in parts.items():
            start = time.perf_counter()
            for i in range(args.images):
                category = ANOMALY_CATEGORIES[i % len(ANOMALY_CATEGORIES)]
                defect = None if defects is None else defects[i % len(defects)]
                anomaly_sample(category, "test", i, image_size=args.size, defect=defect)
            rates[name].append(args.images / (time.perf_counter() - start))
    median = {v: round(statistics.median(r), 1) for v, r in rates.items()}
    rows = [[v, median[v], f"{median[v] / median['classic']:.2f}x"] for v in rates]
    print(markdown_table(["variety", "images/s", "vs classic"], rows))
    data = {
        "image_size": args.size,
        "images": args.images,
        "images_per_s": median,
        "runs": rates,
        "machine": machine_info(),
        "load": load_average(),
    }
    print(f"wrote {write_json(data, 'shapes_speed.json')}")


if __name__ == "__main__":
    main()
