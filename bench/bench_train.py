"""Training-step throughput and peak memory: clipforge vs OpenCLIP on the same architecture and batch.

One step = forward of both towers + contrastive loss + backward + AdamW. Each (implementation,
precision) runs in its own subprocess (so peak RSS is its own), several times, interleaved, and the
median is reported. OpenCLIP runs in a Python that can import it (`--peer-python`, e.g. a venv with
torchvision); without one only clipforge is measured.

    python bench/bench_train.py --peer-python "$CLIPFORGE_PEER_PYTHON"    # see bench/README.md: the peer venv
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

# The small config of DESIGN.md: embed 256; vision 64 px, patch 16, 6 layers, width 256;
# text context 32, 6 layers, width 256, 4 heads, vocab 49408.
SMALL = {
    "embed_dim": 256,
    "vision_cfg": {"image_size": 64, "layers": 6, "width": 256, "patch_size": 16, "head_width": 64},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 256, "heads": 4, "layers": 6},
}


def make_inputs(batch: int, seed: int = 0):
    """Pixels and caption tokens (lengths 8-20 of context 32, like short captions)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(batch, 3, 64, 64, generator=g)
    tokens = torch.zeros(batch, 32, dtype=torch.long)
    lengths = torch.randint(8, 21, (batch,), generator=g)
    for i, n in enumerate(lengths.tolist()):
        tokens[i, 0] = 49406
        tokens[i, 1 : n - 1] = torch.randint(1, 49000, (n - 2,), generator=g)
        tokens[i, n - 1] = 49407
    return pixels, tokens


def worker(impl: str, precision: str, batch: int, steps: int, warmup: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    pixels, tokens = make_inputs(batch)
    if impl == "clipforge":
        import clipforge
        from clipforge.losses import ClipLoss

        model = clipforge.create_model("small").train()

        def features():
            return model.encode_image(pixels, normalize=True), model.encode_text(tokens, normalize=True)

    else:
        import open_clip

        model = open_clip.model.CLIP(**SMALL).train()
        ClipLoss = open_clip.loss.ClipLoss  # noqa: N806

        def features():
            out = model(pixels, tokens)
            return out[0], out[1]

    loss_fn = ClipLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        with autocast:
            img, txt = features()
            out = loss_fn(img.float(), txt.float(), model.logit_scale.exp())
        loss = out[0] if isinstance(out, tuple) else out
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    return {
        "impl": impl,
        "precision": precision,
        "step_s": step,
        "samples_per_s": batch / step,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "loss": float(loss),
        "torch": torch.__version__,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument(
        "--peer-python",
        default=os.environ.get("CLIPFORGE_PEER_PYTHON") or None,
        help="a python that imports open_clip (default: $CLIPFORGE_PEER_PYTHON; unset = clipforge only)",
    )
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "train.json"))
    p.add_argument("--worker", nargs=2, metavar=("IMPL", "PRECISION"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.batch, args.steps, args.warmup, args.threads)))
        return

    impls = [("clipforge", sys.executable)]
    if args.peer_python:
        impls.append(("openclip", args.peer_python))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    runs: list[dict] = []
    loads = []
    for rep in range(args.repeats):
        for precision in args.precisions:
            for impl, python in impls:  # interleaved so machine load affects every implementation alike
                loads.append(os.getloadavg()[0])
                cmd = [
                    python,
                    __file__,
                    "--worker",
                    impl,
                    precision,
                    "--batch",
                    str(args.batch),
                    "--steps",
                    str(args.steps),
                    "--warmup",
                    str(args.warmup),
                    "--threads",
                    str(args.threads),
                ]
                res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
                print(f"rep {rep} {impl:9s} {precision}: {runs[-1]['samples_per_s']:.1f} samples/s", flush=True)
    summary = {}
    for precision in args.precisions:
        for impl, _ in impls:
            sel = [r for r in runs if r["impl"] == impl and r["precision"] == precision]
            summary[f"{impl}/{precision}"] = {
                "samples_per_s_median": statistics.median(r["samples_per_s"] for r in sel),
                "peak_rss_mb_median": statistics.median(r["peak_rss_mb"] for r in sel),
                "runs": [round(r["samples_per_s"], 2) for r in sel],
            }
    ratios = {}
    if args.peer_python:
        for a in args.precisions:
            for b in args.precisions:
                ratios[f"clipforge/{a} vs openclip/{b}"] = (
                    summary[f"clipforge/{a}"]["samples_per_s_median"] / summary[f"openclip/{b}"]["samples_per_s_median"]
                )
    result = {
        "benchmark": "training step (forward + loss + backward + AdamW), small config",
        "batch": args.batch,
        "threads": args.threads,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "load_average_during": {"min": min(loads), "max": max(loads)},
        "summary": summary,
        "ratios": ratios,
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"summary": summary, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
