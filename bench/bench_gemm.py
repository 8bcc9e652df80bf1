"""The machine's matrix-multiply ceiling: GFLOP/s of the kernels an image tower spends its time in.

The throughput goals of the inference benchmark only mean something next to what the CPU can do.
This measures the four linear shapes of ViT-B/32 at batch 32 (1600 token rows) and one large square
GEMM through each kernel family, and turns the best sustained rate into an images/s ceiling for
ViT-B/32 (~8.8 GFLOP per image):

- `aten-fp32`: torch's default fp32 path (`F.linear`; MKL on x86), what OpenCLIP and HF use;
- `onednn-fp32` / `onednn-bf16`: weights prepacked for oneDNN (`clipforge.fast`'s kernels);
- `aten-bf16`: `F.linear` on bf16 tensors (bf16 weights, as OpenCLIP's bf16 mode).

    python bench/bench_gemm.py            # writes bench/results/gemm.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import load_average, machine_info, markdown_table, timed, write_json  # noqa: E402

#: (rows, in_features, out_features): qkv, out-proj, mlp fc, mlp proj of ViT-B/32 at batch 32; a square GEMM
SHAPES = {"qkv": (1600, 768, 2304), "out": (1600, 768, 768), "fc": (1600, 768, 3072), "proj": (1600, 3072, 768)}
SQUARE = (2048, 2048, 2048)
VITB32_GFLOP_PER_IMAGE = 8.8


def cpu_family() -> dict[str, str]:
    """Vendor family/model numbers: e.g. AMD family 25 = Zen 3/4 (AVX-512 on 256-bit units), 26 = Zen 5."""
    out: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("vendor_id", "cpu family", "model", "stepping", "cpu MHz") and key not in out:
                out[key] = value.strip()
    except OSError:
        pass
    return out


def kernel(name: str, weight: torch.Tensor, rows: int):
    dtype = torch.bfloat16 if name.endswith("bf16") else torch.float32
    w = weight.to(dtype).contiguous()
    if name.startswith("onednn"):
        packed = torch.ops.mkldnn._reorder_linear_weight(w, rows)
        return dtype, lambda x: torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
    return dtype, lambda x: F.linear(x, w)


def measure(name: str, shape: tuple[int, int, int], repeats: int, min_seconds: float) -> float:
    rows, k, n = shape
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(n, k, generator=g)
    dtype, fn = kernel(name, weight, rows)
    x = torch.randn(rows, k, generator=g).to(dtype)
    with torch.inference_mode():
        fn(x)
        seconds = [timed(lambda: fn(x), min_seconds)[0] for _ in range(repeats)]
    return 2 * rows * k * n / statistics.median(seconds) / 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--min-seconds", type=float, default=0.5, help="each measurement repeats calls this long")
    ap.add_argument("--out", default="gemm.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    kernels = ["aten-fp32", "aten-bf16"]
    if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        kernels += ["onednn-fp32", "onednn-bf16"]
    shapes = {**SHAPES, "square-2048": SQUARE}
    gflops = {k: {s: round(measure(k, shape, args.repeats, args.min_seconds), 1) for s, shape in shapes.items()}
              for k in kernels}  # fmt: skip
    flops = {s: 2 * r * i * o for s, (r, i, o) in SHAPES.items()}
    summary = {}
    for k, rates in gflops.items():
        # time-weighted rate over the tower's linear mix (12 layers use each shape once per layer)
        mix = sum(flops.values()) / sum(flops[s] / (rates[s] * 1e9) for s in SHAPES) / 1e9
        summary[k] = {
            "vitb32_mix_gflops": round(mix, 1),
            "vitb32_images_per_s_ceiling": round(mix / VITB32_GFLOP_PER_IMAGE, 1),
        }
    doc = {
        "benchmark": "GEMM ceiling",
        "command": "python bench/bench_gemm.py " + " ".join(sys.argv[1:]),
        "machine": {**machine_info(), **cpu_family(), "load_average": load_average()},
        "gflops": gflops,
        "summary": summary,
        "note": "images/s ceiling = the linears' FLOP rate / 8.8 GFLOP per ViT-B/32 image (attention, "
        "LayerNorm and the patch embedding add ~5% more work, so real throughput stays below it)",
    }
    path = write_json(doc, args.out)
    rows = [[k, *gflops[k].values(), summary[k]["vitb32_mix_gflops"], summary[k]["vitb32_images_per_s_ceiling"]]
            for k in kernels]  # fmt: skip
    print(markdown_table(["kernel", *shapes, "ViT-B/32 mix", "img/s ceiling"], rows))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
