"""Whole batches vs the engine's cache-sized chunks (`FastCLIP.image_chunk` / `text_chunk`).

Why the engines split large batches: ViT-B/32 (random weights) images at batch 32/64/128 and 256
captions (5-25 tokens), each engine precision run with whole batches and with its default chunks,
interleaved, medians.

    python bench/bench_chunks.py            # writes bench/results/chunks.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import load_average, machine_info, markdown_table, timed, write_json  # noqa: E402

import clipforge  # noqa: E402
from clipforge.fast import optimize  # noqa: E402
from clipforge.fast.engine import UNCHUNKED  # noqa: E402


def captions(n: int, ctx: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.zeros(n, ctx, dtype=torch.long)
    for i, length in enumerate(torch.randint(5, 26, (n,), generator=g).tolist()):
        tokens[i, 0], tokens[i, length - 1] = 49406, 49407
        tokens[i, 1 : length - 1] = torch.randint(1, 49000, (length - 2,), generator=g)
    return tokens


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="chunks.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = clipforge.create_model(args.model).eval()
    size = model.config.vision.image_size
    pixels = torch.randn(128, 3, size, size, generator=torch.Generator().manual_seed(0))
    tokens = captions(256, model.config.text.context_length)
    cells = [("image", n) for n in (32, 64, 128)] + [("text", 256)]
    rows, results, default_chunks = [], [], {}
    for precision in ("fp32", "bf16", "int8"):
        engine = optimize(model, precision)
        chunks = {"chunked": (engine.image_chunk, engine.text_chunk), "whole": (UNCHUNKED, UNCHUNKED)}
        default_chunks = {"image": engine.image_chunk, "text": engine.text_chunk}
        for task, n in cells:
            x, fn = (pixels[:n], engine.encode_image) if task == "image" else (tokens[:n], engine.encode_text)
            seconds: dict[str, list[float]] = {mode: [] for mode in chunks}
            for mode in chunks:  # warm-up
                engine.image_chunk, engine.text_chunk = chunks[mode]
                fn(x)
            for _ in range(args.repeats):
                for mode in chunks:
                    engine.image_chunk, engine.text_chunk = chunks[mode]
                    seconds[mode].append(timed(lambda: fn(x))[0])
            rate = {mode: n / statistics.median(s) for mode, s in seconds.items()}
            results.append({"precision": precision, "task": task, "batch": n, "per_s": rate, "seconds": seconds})
            rows.append([precision, f"{task} x{n}", f"{rate['whole']:.1f}", f"{rate['chunked']:.1f}",
                         f"{rate['chunked'] / rate['whole']:.2f}"])  # fmt: skip
    doc = {
        "benchmark": "whole batches vs chunks",
        "command": "python bench/bench_chunks.py " + " ".join(sys.argv[1:]),
        "model": f"{args.model}, random weights",
        "chunks": default_chunks,
        "machine": {**machine_info(), "load_average": load_average()},
        "results": results,
    }
    path = write_json(doc, args.out)
    print(markdown_table(["precision", "input", "whole batch /s", "chunked /s", "ratio"], rows))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
