"""Inference throughput of clipforge vs its peers, side by side in one run (CPU).

    python bench/bench_inference.py                    # ViT-B-32, image batch 32, text batch 256
    python bench/bench_inference.py --quick            # small model, few repeats: a smoke test

Implementations (same random weights, same inputs; the ones whose package is missing are skipped):
  clipforge-plain          the model itself, fp32 (no fast path)
  clipforge-{fp32,bf16,int8}  `clipforge.fast.optimize(model, precision)`, eager torch backend
  clipforge-bf16-fast      `optimize(model, "bf16", residual_fp32=False)`: all-bf16 residual stream
  clipforge-compile-{fp32,bf16}  `optimize(..., compile=True)` (with --compile)
  clipforge-onnx-{fp32,int8}  `optimize(..., backend="onnx")`
  hf-fp32, hf-fp32-cut     transformers CLIPModel (sdpa); `-cut`: texts padded to the longest, not 77
  hf-bf16-compile(-cut)    bf16 autocast + torch.compile (with --compile)
  ort-fp32                 onnxruntime on a plain export of the reference model (texts padded to 77)
  openclip-{fp32,bf16}     open_clip in another virtualenv (--openclip-python), fp32 and bf16 weights

Implementations are interleaved (A B C A B C ...) so load spikes from other processes hit all alike;
medians are reported with the load average. Results go to bench/results/inference-<time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from common import (  # noqa: E402
    PeakRSS,
    Series,
    interleave,
    load_average,
    machine_info,
    markdown_table,
    release_free_memory,
    rss_mb,
    timed,
    write_json,
)

#: the peer virtualenv's python (open_clip needs torchvision, which does not import beside this torch build)
DEFAULT_OPENCLIP_PYTHON = os.environ.get("CLIPFORGE_PEER_PYTHON", "")
SOT, EOT = 49406, 49407

# Goals of the fast-inference issue: (our impl, peer, minimum ratio).
GOALS = [
    ("clipforge-fp32", "openclip-fp32", 2.0),
    ("clipforge-fp32", "ort-fp32", 1.0),
    ("clipforge-bf16", "openclip-bf16", 1.3),
    ("clipforge-bf16", "hf-bf16-compile", 1.1),
    ("clipforge-bf16", "hf-bf16-compile-cut", 1.1),
    ("clipforge-bf16-fast", "openclip-bf16", 1.3),
    ("clipforge-bf16-fast", "hf-bf16-compile", 1.1),
    ("clipforge-bf16-fast", "hf-bf16-compile-cut", 1.1),
]


# --------------------------------------------------------------------------- inputs


def make_inputs(image_size: int, context: int, images: int, texts: int, seed: int = 0):
    """Random pixels [images, 3, S, S] and captions [texts, context] of 5–25 tokens (mean 15, incl. SOT/EOT)."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(images, 3, image_size, image_size, generator=g)
    lengths = torch.randint(5, 26, (texts,), generator=g).clamp(max=context)
    tokens = torch.zeros(texts, context, dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        tokens[i, 0] = SOT
        tokens[i, 1 : n - 1] = torch.randint(1, SOT - 1, (n - 2,), generator=g)
        tokens[i, n - 1] = EOT
    return pixels, tokens


# --------------------------------------------------------------------------- implementations


def built(factory: Callable[[], Any]) -> tuple[Any, float, float]:
    """(factory(), seconds it took, MiB of RSS it added)."""
    release_free_memory()
    before, start = rss_mb(), time.perf_counter()
    obj = factory()
    seconds = time.perf_counter() - start
    release_free_memory()
    return obj, seconds, rss_mb() - before


@dataclass
class Impl:
    """One implementation: callables for the two towers (None = not measured) and setup facts."""

    name: str
    image: Callable | None = None
    text: Callable | None = None
    setup_s: float = 0.0
    note: str = ""
    setup_mb: float = 0.0  # RSS added by building it (prepared weights, sessions)
    sweep: bool = True  # take part in the batch-size sweep (compiled graphs recompile per shape)
    first_call_s: dict[str, float] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)


def clipforge_impls(model, args) -> list[Impl]:
    from clipforge.fast import optimize

    out = [Impl("clipforge-plain", lambda px: model.encode_image(px), lambda tk: model.encode_text(tk), note="model")]
    variants = [(p, "torch", False, {}) for p in ("fp32", "bf16", "int8")]
    variants.append(("bf16-fast", "torch", False, {"residual_fp32": False}))
    if args.compile:
        variants += [("fp32", "torch", True, {}), ("bf16", "torch", True, {})]
    if _has("onnxruntime") and _has("onnxscript") and not args.no_onnx:
        variants += [("fp32", "onnx", False, {}), ("int8", "onnx", False, {})]
    for label, backend, compiled, extra in variants:
        name = "clipforge-" + ("compile-" if compiled else "") + ("onnx-" if backend == "onnx" else "") + label
        if args.only and name not in args.only:
            continue
        precision = label.split("-")[0]
        engine, seconds, mb = built(lambda: optimize(model, precision, backend=backend, compile=compiled, **extra))
        out.append(Impl(name, engine.encode_image, engine.encode_text, seconds, repr(engine), mb, sweep=not compiled))
        log(f"built {name} in {seconds:.1f}s (+{mb:.0f} MiB)")
    return out


def hf_impls(model, args, workdir: Path) -> list[Impl]:
    from transformers import CLIPModel

    from clipforge.checkpoints import export_hf

    export_hf(model, workdir / "hf")
    hf, setup, mb = built(lambda: CLIPModel.from_pretrained(workdir / "hf", attn_implementation="sdpa").eval())

    def image(px):
        return hf.get_image_features(pixel_values=px).pooler_output

    def text_features(ids, mask):
        return hf.get_text_features(input_ids=ids, attention_mask=mask).pooler_output

    def text(tk, cut: bool, features=text_features):
        """The attention mask a tokenizer returns; `cut`: padding to the batch's longest (padding=True)."""
        mask = (torch.arange(tk.shape[1])[None, :] <= _eot(tk)[:, None]).long()
        if cut:
            n = int(mask.sum(1).max())
            tk, mask = tk[:, :n], mask[:, :n]
        return features(tk, mask)

    impls = [
        Impl(
            "hf-fp32", image, lambda tk: text(tk, False), setup, "transformers CLIPModel sdpa, texts padded to 77", mb
        ),
        Impl("hf-fp32-cut", None, lambda tk: text(tk, True), setup, "texts padded to the batch's longest"),
    ]
    if args.compile:
        image_c = torch.compile(image)
        features_c = torch.compile(text_features)

        def autocast(fn):
            def run(*a):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return fn(*a)

            return run

        impls += [
            Impl(
                "hf-bf16-compile",
                autocast(image_c),
                autocast(lambda tk: text(tk, False, features_c)),
                0.0,
                "bf16 autocast + torch.compile",
                sweep=False,
            ),
            Impl(
                "hf-bf16-compile-cut",
                None,
                autocast(lambda tk: text(tk, True, features_c)),
                0.0,
                "bf16 autocast + torch.compile, texts padded to the longest",
                sweep=False,
            ),
        ]
    return impls


def ort_impl(model, workdir: Path) -> Impl:
    """onnxruntime on a plain export of the reference model (like an OpenCLIP export): texts at full length."""
    from clipforge.fast.onnx import export_module, session

    cfg = model.config
    pixels, tokens = make_inputs(cfg.vision.image_size, cfg.text.context_length, 2, 2)
    batch = torch.export.Dim("batch", min=1)
    start = time.perf_counter()
    export_module(_PlainImage(model), pixels, workdir / "ort-image.onnx", "pixels", {0: batch})
    export_module(_PlainText(model), tokens, workdir / "ort-text.onnx", "tokens", {0: batch})
    (image_sess, text_sess), _, mb = built(
        lambda: (session(workdir / "ort-image.onnx"), session(workdir / "ort-text.onnx"))
    )
    return Impl(
        "ort-fp32",
        lambda px: image_sess.run(None, {"pixels": px.numpy()})[0],
        lambda tk: text_sess.run(None, {"tokens": tk.numpy()})[0],
        time.perf_counter() - start,
        "onnxruntime CPU, plain export (like OpenCLIP's), texts at context length",
        mb,
    )


class _PlainImage(torch.nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.visual = model.visual

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixels)


class _PlainText(torch.nn.Module):
    """The text tower over all context positions (no cut), as other exports compute it."""

    def __init__(self, model) -> None:
        super().__init__()
        self.text = model.text

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        from clipforge.model.clip import eot_positions

        x = self.text.forward_hidden(tokens)
        eot = eot_positions(tokens, self.text.cfg)
        return x[torch.arange(x.shape[0]), eot] @ self.text.text_projection


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {load_average()[:1]}] {message}", file=sys.stderr, flush=True)


def _eot(tokens):
    return (tokens == EOT).int().argmax(dim=1)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# --------------------------------------------------------------------------- OpenCLIP child process


class OpenClipChild:
    """open_clip runs in its own virtualenv; this drives it over stdin/stdout, one measurement per request."""

    def __init__(self, python: str, workdir: Path, threads: int) -> None:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        env.pop("PYTHONPATH", None)
        self.proc = subprocess.Popen(
            [python, __file__, "--child-openclip", str(workdir), "--threads", str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.hello = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the open_clip child exited")
        return json.loads(line)

    def ask(self, **request: Any) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        if "error" in reply:
            raise RuntimeError(f"open_clip child: {reply['error']}")
        return reply

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask(cmd="quit")
        self.proc.wait(timeout=30)


def child_openclip(workdir: Path, threads: int) -> int:
    """Child: load open_clip with the exported weights, then answer timing requests."""
    import open_clip
    from safetensors.torch import load_file

    torch.set_num_threads(threads)
    cfg = json.loads((workdir / "openclip" / "open_clip_config.json").read_text())["model_cfg"]
    fp32 = open_clip.model.CLIP(**cfg).eval()
    fp32.load_state_dict(load_file(str(workdir / "openclip" / "open_clip_model.safetensors")))
    bf16 = copy.deepcopy(fp32).to(torch.bfloat16)
    inputs = torch.load(workdir / "inputs.pt")
    models = {"openclip-fp32": (fp32, torch.float32), "openclip-bf16": (bf16, torch.bfloat16)}
    print(json.dumps({"torch": torch.__version__, "open_clip": open_clip.__version__}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req["cmd"] == "quit":
            print(json.dumps({"ok": True}), flush=True)
            return 0
        try:
            model, dtype = models[req["impl"]]
            batch = req["batch"]
            if req["task"] == "image":
                x = inputs["pixels"][:batch].to(dtype)
                fn = lambda: model.encode_image(x)  # noqa: E731
            else:
                x = inputs["tokens"][:batch]
                fn = lambda: model.encode_text(x)  # noqa: E731
            with torch.inference_mode():
                if req["cmd"] == "features":
                    np.save(workdir / "openclip-features.npy", fn().float().numpy())
                    print(json.dumps({"ok": True}), flush=True)
                    continue
                if req["cmd"] == "memory":
                    release_free_memory()
                    with PeakRSS(0.001) as peak:
                        fn()
                    reply = {"peak_delta_mb": peak.delta_mb, "peak_rss_mb": peak.peak_mb}
                else:
                    seconds, calls = timed(fn, req.get("min_seconds", 0.0))
                    reply = {"seconds": seconds, "calls": calls}
            print(json.dumps(reply), flush=True)
        except Exception as exc:  # report, keep serving
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
    return 0


# --------------------------------------------------------------------------- measurement


def measure(impls: list[Impl], child: OpenClipChild | None, child_names: list[str], cells, repeats, pixels, tokens):
    """Interleaved timing of every (impl, task, batch) cell → {key: Series}."""
    results: dict[tuple[str, str, int], Series] = {}
    by_name = {i.name: i for i in impls}
    names = [i.name for i in impls] + child_names
    for round_, name in interleave(names, repeats):
        if name == names[0]:
            log(f"round {round_ + 1}/{repeats} of {[c[:2] for c in cells]}")
        for task, batch, min_s, sweep_only in cells:
            impl = by_name.get(name)
            fn = None if impl is None else (impl.image if task == "image" else impl.text)
            if impl is not None and (fn is None or (sweep_only and not impl.sweep)):
                continue
            key = (name, task, batch)
            series = results.setdefault(key, Series(name, task, batch))
            if impl is None:
                series.add(child.ask(cmd="run", impl=name, task=task, batch=batch, min_seconds=min_s)["seconds"])
                continue
            x = pixels[:batch] if task == "image" else tokens[:batch]
            with torch.inference_mode():
                seconds, _ = timed(lambda: fn(x), min_s)
            series.add(seconds)
    return results


def memory(impls: list[Impl], child, child_names, results: dict, pixels, tokens) -> None:
    """Peak RSS rise during one call of each measured cell, with freed heap returned to the OS first."""
    by_name = {i.name: i for i in impls}
    for (name, task, batch), series in results.items():
        if name in by_name:
            fn = by_name[name].image if task == "image" else by_name[name].text
            x = pixels[:batch] if task == "image" else tokens[:batch]
            release_free_memory()
            with torch.inference_mode(), PeakRSS(0.001) as peak:
                fn(x)
            series.peak_delta_mb, series.peak_rss_mb = peak.delta_mb, peak.peak_mb
        elif child is not None:
            reply = child.ask(cmd="memory", impl=name, task=task, batch=batch)
            series.peak_delta_mb, series.peak_rss_mb = reply["peak_delta_mb"], reply["peak_rss_mb"]


def warm_up(impls: list[Impl], child: OpenClipChild | None, child_names, cells, pixels, tokens) -> None:
    """First calls (timed: they include any compilation) and one more warm-up per cell."""
    for impl in impls:
        for task, batch, _, sweep_only in cells:
            fn = impl.image if task == "image" else impl.text
            if fn is None or (sweep_only and not impl.sweep):
                continue
            x = pixels[:batch] if task == "image" else tokens[:batch]
            with torch.inference_mode():
                start = time.perf_counter()
                fn(x)
                impl.first_call_s.setdefault(f"{task}@{batch}", time.perf_counter() - start)
                if not sweep_only:  # sweep cells repeat small batches for 0.5 s anyway
                    fn(x)
            log(f"warm-up {impl.name} {task}@{batch}: first call {impl.first_call_s[f'{task}@{batch}']:.2f}s")
    if child is not None:
        for name in child_names:
            for task, batch, _, sweep_only in cells:
                for _ in range(1 if sweep_only else 2):
                    child.ask(cmd="run", impl=name, task=task, batch=batch, min_seconds=0.0)
            log(f"warm-up {name}")


def exactness(impls: list[Impl], child, child_names, reference: Impl, pixels, tokens, workdir: Path) -> dict:
    """Max abs difference and minimum cosine of each implementation's features vs the plain fp32 model."""

    def as_np(y):
        return y.float().numpy() if isinstance(y, torch.Tensor) else np.asarray(y, dtype=np.float32)

    out: dict[str, dict[str, float]] = {}
    with torch.inference_mode():
        ref = {"image": as_np(reference.image(pixels)), "text": as_np(reference.text(tokens))}
        feats: dict[tuple[str, str], Any] = {}
        for impl in impls:
            for task, fn, x in (("image", impl.image, pixels), ("text", impl.text, tokens)):
                if fn is not None:
                    feats[(impl.name, task)] = as_np(fn(x))
    if child is not None:
        for name in child_names:
            for task, x in (("image", pixels), ("text", tokens)):
                child.ask(cmd="features", impl=name, task=task, batch=x.shape[0])
                feats[(name, task)] = np.load(workdir / "openclip-features.npy")
    for (name, task), y in feats.items():
        r = ref[task]
        cos = (y * r).sum(1) / (np.linalg.norm(y, axis=1) * np.linalg.norm(r, axis=1))
        out.setdefault(name, {})[f"{task}_max_abs"] = float(np.abs(y - r).max())
        out[name][f"{task}_min_cos"] = float(cos.min())
    return out


# --------------------------------------------------------------------------- report


def ratios(results: dict, task: str, batch: int) -> dict[str, dict[str, float]]:
    cells = {name: s.per_second for (name, t, b), s in results.items() if t == task and b == batch}
    ours = [n for n in cells if n.startswith("clipforge-")]
    peers = [n for n in cells if not n.startswith("clipforge-")]
    return {o: {p: round(cells[o] / cells[p], 3) for p in peers + ["clipforge-plain"] if p != o} for o in ours}


def goal_rows(results: dict, task: str, batch: int) -> list[dict[str, Any]]:
    cells = {name: s.per_second for (name, t, b), s in results.items() if t == task and b == batch}
    rows = []
    for ours, peer, need in GOALS:
        if ours in cells and peer in cells:
            r = cells[ours] / cells[peer]
            rows.append(
                {"task": task, "ours": ours, "peer": peer, "ratio": round(r, 3), "goal": need, "met": r >= need}
            )
    return rows


def print_report(data: dict) -> None:
    """Markdown tables: main cells with ratios, the batch sweep, setup/first-call/memory, goals."""
    args, impls = data["args"], data["implementations"]
    main_batch = {"image": args["batch"], "text": args["text_batch"]}
    for task in ("image", "text"):
        cells = [c for c in data["results"] if c["task"] == task and c["batch"] == main_batch[task]]
        if not cells:
            continue
        ratios_ = data["ratios"][task]
        peers = [c["impl"] for c in cells if not c["impl"].startswith("clipforge-")]
        print(f"\n### {task}s, batch {main_batch[task]} (median of {args['repeats']} interleaved runs)")
        header = ["impl", f"{task}s/s", "first call s", "setup s", "setup MiB", "peak +MiB", "load"]
        header += [f"vs {p}" for p in peers]
        rows = []
        for c in sorted(cells, key=lambda c: -c["per_s"]):
            info = impls.get(c["impl"], {})
            first = info.get("first_call_s", {}).get(f"{task}@{c['batch']}", "")
            row = [c["impl"], f"{c['per_s']:.1f}", first, info.get("setup_s", ""), info.get("setup_mb", "")]
            row += [f"{c['peak_delta_mb']:.0f}", c["load1_median"]]
            row += [f"{ratios_.get(c['impl'], {}).get(p, ''):.2f}" if c["impl"] in ratios_ else "" for p in peers]
            rows.append(row)
        print(markdown_table(header, rows))
    sweep = sorted({(c["task"], c["batch"]) for c in data["results"]})
    if len(sweep) > 2:
        print(f"\n### batch sweep (per second; median of {args['sweep_repeats']} runs off the main batch)")
        names = sorted({c["impl"] for c in data["results"]})
        lookup = {(c["impl"], c["task"], c["batch"]): c["per_s"] for c in data["results"]}
        header = ["impl"] + [f"{t} {b}" for t, b in sweep]
        rows = [[n] + [f"{lookup[(n, t, b)]:.1f}" if (n, t, b) in lookup else "" for t, b in sweep] for n in names]
        print(markdown_table(header, rows))
    print("\n### goals")
    rows = [
        [g["task"], g["ours"], g["peer"], g["ratio"], g["goal"], "yes" if g["met"] else "NO"] for g in data["goals"]
    ]
    print(markdown_table(["task", "ours", "peer", "ratio", "goal", "met"], rows))
    print(f"\nload average at start {data['load_start']}, at end {data['load_end']}")


# --------------------------------------------------------------------------- zero-shot agreement

PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
    "logo",
    "stereo_motorcycle",
    "brick",
    "camera",
    "coins",
    "grass",
    "gravel",
    "moon",
    "page",
    "text",
    "clock",
)


def photo_crops(n: int, transform, seed: int = 0) -> torch.Tensor:
    """`n` preprocessed random crops (scale 0.2–1, random flips) of scikit-image's sample photos."""
    import skimage.data
    from PIL import Image

    photos = []
    for name in PHOTOS:
        img = getattr(skimage.data, name)()
        img = img[0] if isinstance(img, tuple) else img
        photos.append(Image.fromarray(img).convert("RGB"))
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        photo = photos[i % len(photos)]
        w, h = photo.size
        side = int(min(w, h) * np.sqrt(rng.uniform(0.2, 1.0)))
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        crop = photo.crop((x, y, x + side, y + side))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        out.append(transform(crop))
    return torch.stack(out)


def class_prompts(tokenizer, n: int) -> list[list[str]]:
    """`n` classes, one prompt each, "a photo of a {word}." over words spread evenly through the BPE vocabulary."""
    words = sorted(w[:-4] for w in tokenizer.encoder if w.endswith("</w>") and w[:-4].isalpha() and len(w) >= 9)
    step = len(words) / n
    return [[f"a photo of a {words[int(i * step)]}."] for i in range(n)]


def photos_set(args):
    """Random-weight model (args.model), crops of scikit-image photos, 1000 one-prompt classes."""
    import clipforge
    from clipforge.transforms import ImageTransform

    torch.manual_seed(0)
    model = clipforge.create_model(args.model)
    tokenizer = clipforge.get_tokenizer(args.model)
    pixels = photo_crops(args.agreement_images, ImageTransform(model.config.preprocess))
    description = {
        "model": f"{args.model}, random weights (seed 0)",
        "images": f"{len(pixels)} random crops (scale 0.2-1, flips) of {len(PHOTOS)} scikit-image sample photos",
        "classes": f"{args.agreement_classes} prompts 'a photo of a {{word}}.' over BPE vocabulary words",
    }
    return model, tokenizer, pixels, class_prompts(tokenizer, args.agreement_classes), None, description


def shapes_set(args):
    """A model trained on the shapes world (default: the embedded one) on shapes-world test images."""
    import clipforge
    from clipforge.data.shapes import ShapesClassification

    model, preprocess, tokenizer = clipforge.load(args.agreement_model)
    data = ShapesClassification(
        task=args.agreement_task, split="test", size=args.agreement_images, transform=preprocess
    )
    pixels = torch.stack([data[i][0] for i in range(len(data))])
    labels = torch.tensor(data.targets)
    prompts = [data.prompts(c) for c in data.classnames]
    description = {
        "model": f"{args.agreement_model or 'embedded default model'} ({model.config.name}, shapes-world trained)",
        "images": f"{len(pixels)} shapes-world test images, task {args.agreement_task}",
        "classes": f"{len(prompts)} classes x {len(prompts[0])} prompt templates (ensembled)",
    }
    return model, tokenizer, pixels, prompts, labels, description


def agreement(args) -> int:
    """Top-1 zero-shot agreement of each engine with the fp32 model (see photos_set / shapes_set)."""
    from clipforge.fast import optimize

    torch.set_num_threads(args.threads)
    model, tokenizer, pixels, prompts, labels, description = (
        shapes_set(args) if args.agreement == "shapes" else photos_set(args)
    )
    flat = [p for ps in prompts for p in ps]
    engines: dict[str, Any] = {"fp32-model": model}
    for precision in ("fp32", "bf16", "int8"):
        engines[precision] = optimize(model, precision)
    engines["bf16-fast"] = optimize(model, "bf16", residual_fp32=False)
    if _has("onnxruntime") and _has("onnxscript") and not args.no_onnx:
        engines["onnx-int8"] = optimize(model, "int8", backend="onnx")
    feats = {}
    with torch.inference_mode():
        for name, eng in engines.items():
            img = torch.cat(
                [eng.encode_image(pixels[i : i + 32], normalize=True).float() for i in range(0, len(pixels), 32)]
            )
            txt = torch.cat(
                [
                    eng.encode_text(tokenizer(flat[i : i + 256]), normalize=True).float()
                    for i in range(0, len(flat), 256)
                ]
            )
            classes = F.normalize(txt.view(len(prompts), len(prompts[0]), -1).mean(1), dim=-1)
            feats[name] = (img, classes)
            log(f"agreement: {name} done")
    ref_img, ref_cls = feats["fp32-model"]
    ref_logits = 100.0 * ref_img @ ref_cls.t()
    top2 = ref_logits.topk(2, dim=1).values
    ref_top1 = ref_logits.argmax(1)
    report: dict[str, Any] = {
        "benchmark": "zero-shot agreement",
        "set": args.agreement,
        **description,
        "reference_margin_top1_top2": {
            "median": float((top2[:, 0] - top2[:, 1]).median()),
            "min": float((top2[:, 0] - top2[:, 1]).min()),
        },
        "distinct_reference_classes": int(ref_top1.unique().numel()),
        "reference_accuracy": None if labels is None else float((ref_top1 == labels).float().mean()),
        "load": load_average(),
        "engines": {},
    }
    for name, (img, cls) in feats.items():
        if name == "fp32-model":
            continue
        logits = 100.0 * img @ cls.t()
        report["engines"][name] = {
            "top1_agreement": float((logits.argmax(1) == ref_top1).float().mean()),
            "top1_agreement_fp32_classes": float(((100.0 * img @ ref_cls.t()).argmax(1) == ref_top1).float().mean()),
            "accuracy": None if labels is None else float((logits.argmax(1) == labels).float().mean()),
            "image_min_cos": float(F.cosine_similarity(img, ref_img).min()),
            "class_min_cos": float(F.cosine_similarity(cls, ref_cls).min()),
            "max_abs_logit_diff": float((logits - ref_logits).abs().max()),
        }
    path = write_json(report, args.out or f"agreement-{args.agreement}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    print(json.dumps(report, indent=2))
    print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------- main


def build_report(args, meta: dict, impls: list[Impl], exact: dict, results: dict, complete: bool) -> dict:
    """The JSON document: run facts, per-implementation setup, exactness, results, ratios, goals."""
    cfg, tokens = meta["cfg"], meta["tokens"]
    lengths = (_eot(tokens[: args.text_batch]) + 1).float()
    data = {
        "benchmark": "inference",
        "started": meta["started"],
        "command": meta["command"],
        "args": {k: v for k, v in vars(args).items() if k != "child_openclip"},
        "machine": machine_info(),
        "load_start": meta["load_start"],
        "load_end": load_average(),
        "model": {"name": args.model, "weights": "random (seed 0)"},
        "inputs": {
            "image": f"randn [B, 3, {cfg.vision.image_size}, {cfg.vision.image_size}]",
            "text": f"[{args.text_batch}, {cfg.text.context_length}] padded; caption lengths incl. SOT/EOT "
            f"mean {lengths.mean():.1f}, max {int(lengths.max())}",
        },
        "openclip_child": meta["child_info"],
        "implementations": {
            i.name: {
                "note": i.note,
                "setup_s": round(i.setup_s, 3),
                "setup_mb": round(i.setup_mb, 1),
                "first_call_s": {k: round(v, 3) for k, v in i.first_call_s.items()},
            }
            for i in impls
        },
        "exactness_vs_plain_fp32": exact,
        "results": [series.to_dict() for series in results.values()],
        "ratios": {
            "image": ratios(results, "image", args.batch),
            "text": ratios(results, "text", args.text_batch),
        },
        "goals": goal_rows(results, "image", args.batch) + goal_rows(results, "text", args.text_batch),
    }
    data["complete"] = complete
    return data


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="ViT-B-32", help="clipforge preset (random weights)")
    p.add_argument("--batch", type=int, default=32, help="image batch of the main comparison")
    p.add_argument("--text-batch", type=int, default=256, help="text batch of the main comparison")
    p.add_argument("--repeats", type=int, default=7, help="interleaved rounds for the main cells")
    p.add_argument("--sweep", default="1,8,32,128", help="image and text batch sizes for the sweep ('' = none)")
    p.add_argument("--sweep-repeats", type=int, default=3)
    p.add_argument(
        "--sweep-impls",
        default="clipforge-plain,clipforge-fp32,clipforge-bf16,clipforge-int8,hf-fp32,hf-fp32-cut,ort-fp32,"
        "openclip-fp32,openclip-bf16,clipforge-bf16-fast",
        help="implementations measured in the batch-size sweep ('all' = every one)",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="also measure torch.compile variants (slow first calls)")
    p.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime implementations")
    p.add_argument("--no-hf", action="store_true")
    p.add_argument("--no-exactness", action="store_true", help="skip comparing every implementation's features")
    p.add_argument(
        "--openclip-python",
        default=DEFAULT_OPENCLIP_PYTHON,
        help="python of a venv with open_clip (default: $CLIPFORGE_PEER_PYTHON; unset = skip open_clip)",
    )
    p.add_argument("--only", default="", help="comma-separated clipforge impl names to build (default: all)")
    p.add_argument("--out", default=None, help="output JSON name in bench/results/ (default: inference-<time>.json)")
    p.add_argument("--quick", action="store_true", help="small model, 2 repeats, no sweep: a smoke test")
    p.add_argument(
        "--agreement",
        choices=["photos", "shapes"],
        default=None,
        help="measure zero-shot top-1 agreement with fp32 instead of speed: 'photos' (random --model, "
        "scikit-image crops, 1000 classes) or 'shapes' (the trained default model, shapes-world test set)",
    )
    p.add_argument("--agreement-images", type=int, default=1000)
    p.add_argument("--agreement-classes", type=int, default=1000, help="classes of the 'photos' set")
    p.add_argument("--agreement-task", default="shape_colour", help="shapes-world task of the 'shapes' set")
    p.add_argument("--agreement-model", default=None, help="checkpoint of the 'shapes' set (default: embedded model)")
    p.add_argument("--report", default=None, help="print the markdown tables of a results JSON and exit")
    p.add_argument("--child-openclip", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.repeats, args.sweep, args.batch, args.text_batch = "small", 2, "", 8, 32
    args.only = [s for s in args.only.split(",") if s]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child_openclip:
        return child_openclip(Path(args.child_openclip), args.threads)
    if args.agreement:
        return agreement(args)
    if args.report:
        print_report(json.loads(Path(args.report).read_text()))
        return 0
    import clipforge
    from clipforge.checkpoints import export_openclip

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    started = time.strftime("%Y%m%d-%H%M%S")
    load_start = load_average()
    model = clipforge.create_model(args.model)
    cfg = model.config
    sweep = [int(s) for s in args.sweep.split(",") if s]
    max_images, max_texts = max([args.batch] + sweep), max([args.text_batch] + sweep)
    pixels, tokens = make_inputs(cfg.vision.image_size, cfg.text.context_length, max_images, max_texts)
    workdir = Path(tempfile.mkdtemp(prefix="clipforge-bench-"))

    impls = clipforge_impls(model, args)
    if not args.no_hf and _has("transformers"):
        impls += hf_impls(model, args, workdir)
    if not args.no_onnx and _has("onnxruntime") and _has("onnxscript"):
        impls.append(ort_impl(model, workdir))
    child, child_names, child_info = None, [], None
    if args.openclip_python and Path(args.openclip_python).exists():
        try:
            export_openclip(model, workdir / "openclip")
            torch.save({"pixels": pixels, "tokens": tokens}, workdir / "inputs.pt")
            child = OpenClipChild(args.openclip_python, workdir, args.threads)
            child_names, child_info = ["openclip-fp32", "openclip-bf16"], child.hello
        except Exception as exc:  # the main benchmark runs without OpenCLIP
            print(f"open_clip child unavailable: {exc}", file=sys.stderr)
            child = None

    main_cells = [("image", args.batch, 0.0, False), ("text", args.text_batch, 0.0, False)]
    sweep_cells = [("image", b, 0.5, True) for b in sweep if b != args.batch]
    sweep_cells += [("text", b, 0.5, True) for b in sweep if b != args.text_batch]
    log(f"{len(impls) + len(child_names)} implementations: {[i.name for i in impls] + child_names}")
    swept = (
        {i.name for i in impls} | set(child_names) if args.sweep_impls == "all" else set(args.sweep_impls.split(","))
    )
    warm_up(impls, child, child_names, main_cells, pixels, tokens)
    if sweep_cells:
        warm_up(
            [i for i in impls if i.name in swept],
            child,
            [n for n in child_names if n in swept],
            sweep_cells,
            pixels,
            tokens,
        )
    exact = {}
    if not args.no_exactness:
        exact = exactness(impls, child, child_names, impls[0], pixels[: args.batch], tokens[: args.text_batch], workdir)
    name = args.out or f"inference-{started}.json"
    meta = {
        "cfg": cfg,
        "tokens": tokens,
        "started": started,
        "load_start": load_start,
        "child_info": child_info,
        "command": "python bench/bench_inference.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    results = measure(impls, child, child_names, main_cells, args.repeats, pixels, tokens)
    write_json(
        build_report(args, meta, impls, exact, results, False), name
    )  # a partial file survives an interrupted sweep
    if sweep_cells:
        sweep_impls = [i for i in impls if i.sweep and i.name in swept]
        sweep_child = [n for n in child_names if n in swept]
        results.update(measure(sweep_impls, child, sweep_child, sweep_cells, args.sweep_repeats, pixels, tokens))
        write_json(build_report(args, meta, impls, exact, results, False), name)
    memory(impls, child, child_names, results, pixels, tokens)
    if child is not None:
        child.close()
    data = build_report(args, meta, impls, exact, results, True)
    path = write_json(data, name)
    print_report(data)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
