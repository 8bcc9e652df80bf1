"""`clipforge export [MODEL] OUT --format onnx`: both towers as ONNX graphs, verified with onnxruntime."""

from __future__ import annotations

import argparse
import json
import time

from tqdm.auto import tqdm

from ..extras import require
from ..fast.onnx import DEFAULT_OPSET, export_onnx, quantize_int8
from .common import add_model_arguments, load_from_args

HELP = "export both towers to ONNX (image.onnx, text.onnx), verified with onnxruntime"
TOLERANCE = 1e-4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", nargs="?", default=None, help="checkpoint to export (or --model; default: embedded model)"
    )
    parser.add_argument("out", help="output directory")
    parser.add_argument(
        "--format", dest="fmt", choices=["onnx"], default="onnx", help="export format (layouts: see convert)"
    )
    parser.add_argument(
        "--precision",
        dest="export_precision",
        choices=["fp32", "int8"],
        default="fp32",
        help="int8 also writes dynamically quantised graphs (image.int8.onnx, text.int8.onnx)",
    )
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 18)")
    parser.add_argument("--no-verify", action="store_true", help="skip the onnxruntime vs torch comparison")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (also off with --json)")
    add_model_arguments(parser, runtime=False)


def run(args: argparse.Namespace) -> int:

    if args.checkpoint and args.model and args.checkpoint != args.model:
        raise ValueError("give the checkpoint once: positionally or with --model")
    verify = not args.no_verify
    require(["onnx", "onnxscript", *(["onnxruntime"] if verify or args.export_precision == "int8" else [])], "onnx")
    model, _, _ = load_from_args(args, path=args.checkpoint or args.model)
    start, progress = time.perf_counter(), not (args.json or args.quiet)
    result = export_onnx(model, args.out, opset=args.opset or DEFAULT_OPSET, verify=verify, progress=progress)
    summary: dict = {"out": str(result.directory), "image": str(result.image), "text": str(result.text)}
    if args.export_precision == "int8":
        for tower in tqdm(("image", "text"), desc="quantising to int8", unit="graph", disable=not progress):
            graph = result.image if tower == "image" else result.text
            summary[f"{tower}_int8"] = str(quantize_int8(graph, result.directory / f"{tower}.int8.onnx"))
    summary["seconds"] = round(time.perf_counter() - start, 2)
    ok = True
    if verify:
        summary.update(image_max_abs=result.image_max_abs, text_max_abs=result.text_max_abs, tolerance=TOLERANCE)
        ok = max(result.image_max_abs or 0.0, result.text_max_abs or 0.0) <= TOLERANCE
        summary["verified"] = ok
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {result.image} and {result.text}")
        if args.export_precision == "int8":
            print(f"wrote {summary['image_int8']} and {summary['text_int8']} (dynamic int8)")
        if verify:
            status = "ok" if ok else f"FAILED (> {TOLERANCE:g})"
            diffs = f"image {result.image_max_abs:.2e}, text {result.text_max_abs:.2e}"
            print(f"onnxruntime vs torch max abs: {diffs} {status}")
        print(f"exported in {summary['seconds']:.1f} s")
    return 0 if ok else 1
