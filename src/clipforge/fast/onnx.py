"""ONNX export of both towers and an ONNX Runtime engine.

`export_onnx(model, out_dir)` writes `image.onnx` (pixels [B, 3, H, W] → features [B, E]) and
`text.onnx` (token ids [B, L], L ≤ context, → features [B, E]) plus `onnx_config.json`. Batch and
text length are dynamic. The text graph expects tokens cut to the batch's longest caption, which
the engine does before every call (`graph.cut_to_longest`).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..model import CLIP
from .encoder import FastCLIP
from .graph import ImageGraph, TextGraph, cut_to_longest

IMAGE_FILE, TEXT_FILE, CONFIG_FILE = "image.onnx", "text.onnx", "onnx_config.json"
DEFAULT_OPSET = 18


@dataclass
class OnnxExport:
    """Paths written by `export_onnx` and the verification figures (max abs vs torch)."""

    directory: Path
    image: Path
    text: Path
    image_max_abs: float | None = None
    text_max_abs: float | None = None


def _example_inputs(model: CLIP, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    size = model.config.vision.image_size
    pixels = torch.randn(batch, 3, size, size, generator=g)
    tcfg = model.config.text
    length = min(8, tcfg.context_length)
    tokens = torch.randint(1, tcfg.vocab_size - 2, (batch, length), generator=g)
    tokens[:, -1] = tcfg.eot_token_id
    tokens[0, length // 2] = tcfg.eot_token_id  # rows of different lengths
    return pixels, tokens


def export_module(
    module: torch.nn.Module, example: torch.Tensor, path: Path, input_name: str, dims: dict, opset: int = DEFAULT_OPSET
) -> None:
    """torch.onnx.export (dynamo) of `module(example)` with dynamic dims `{axis: Dim}`, quietly."""
    registry_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry_log.level
    registry_log.setLevel(logging.ERROR)  # "torchvision is not installed" notes are noise here
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                str(path),
                input_names=[input_name],
                output_names=["features"],
                dynamic_shapes={input_name: dims},
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    finally:
        registry_log.setLevel(level)


def export_onnx(
    model: CLIP, directory: str | Path, opset: int = DEFAULT_OPSET, verify: bool = True, progress: bool = False
) -> OnnxExport:
    """Write both towers as fp32 ONNX graphs; with `verify`, compare onnxruntime to torch. `progress` shows a
    bar over the stages (image graph, text graph, verification)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    if model.dtype != torch.float32 or model.device.type != "cpu":
        model = copy.deepcopy(model).float().cpu()
    model = model.eval()
    size = model.config.vision.image_size
    pixels, tokens = _example_inputs(model)
    batch = torch.export.Dim("batch", min=1)
    length = torch.export.Dim("length", min=1, max=model.config.text.context_length)
    bar = tqdm(total=3 if verify else 2, desc="exporting to ONNX", unit="stage", disable=not progress)
    with torch.no_grad():
        bar.set_postfix_str("image graph")
        export_module(ImageGraph(model), pixels, out / IMAGE_FILE, "pixels", {0: batch}, opset)
        bar.update(1)
        bar.set_postfix_str("text graph")
        export_module(TextGraph(model), tokens, out / TEXT_FILE, "tokens", {0: batch, 1: length}, opset)
        bar.update(1)
    meta = {
        "format": "clipforge-onnx",
        "opset": opset,
        "image": {"file": IMAGE_FILE, "input": "pixels", "shape": ["batch", 3, size, size]},
        "text": {"file": TEXT_FILE, "input": "tokens", "note": "cut tokens to the longest caption's EOT + 1"},
        "model": model.config.to_dict(),
    }
    (out / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    result = OnnxExport(out, out / IMAGE_FILE, out / TEXT_FILE)
    if verify:
        bar.set_postfix_str("verifying with onnxruntime")
        result.image_max_abs, result.text_max_abs = verify_onnx(model, out)
        bar.update(1)
    bar.close()
    return result


def verify_onnx(model: CLIP, directory: str | Path, batch: int = 3) -> tuple[float, float]:
    """Max abs difference of onnxruntime vs torch features on random pixels and ragged captions."""
    directory = Path(directory)
    g = torch.Generator().manual_seed(1)
    size = model.config.vision.image_size
    pixels = torch.randn(batch, 3, size, size, generator=g)
    tcfg = model.config.text
    tokens = torch.zeros(batch, tcfg.context_length, dtype=torch.long)
    for i in range(batch):
        n = max(2, tcfg.context_length - 3 * i)
        tokens[i, :n] = torch.randint(1, tcfg.vocab_size - 2, (n,), generator=g)
        tokens[i, n - 1] = tcfg.eot_token_id
    with torch.no_grad():
        ref_image, ref_text = model.encode_image(pixels).float(), model.encode_text(tokens).float()
    image_sess = session(directory / IMAGE_FILE)
    text_sess = session(directory / TEXT_FILE)
    got_image = image_sess.run(None, {"pixels": pixels.numpy()})[0]
    got_text = text_sess.run(None, {"tokens": cut_to_longest(tokens, model.config).numpy()})[0]
    return (
        float(np.abs(got_image - ref_image.numpy()).max()),
        float(np.abs(got_text - ref_text.numpy()).max()),
    )


def session(path: str | Path, threads: int | None = None):
    """An onnxruntime CPU session with all graph optimisations and `threads` intra-op threads."""
    import onnxruntime as ort  # optional (`onnx` extra): only the ONNX backend needs it

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8 quantisation of an ONNX graph's MatMul weights (onnxruntime.quantization)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # optional (`onnx` extra)

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its "consider pre-processing" advice is printed for every graph
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
    finally:
        root.setLevel(level)
    return dst


def onnx_engine(model: CLIP, precision: str, directory: str | Path | None = None):
    """A `FastCLIP` whose towers run in onnxruntime, exporting `model` to `directory` (or a temp dir)."""
    _check_precision(precision)
    if model.device.type != "cpu":
        raise ValueError("the onnx backend runs on the CPU; move the model with model.cpu() first")
    root = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="clipforge-onnx-"))
    export_onnx(model, root, verify=False)
    return engine_from_export(model, root, precision)


def engine_from_export(model: CLIP, directory: str | Path, precision: str = "fp32"):
    """A `FastCLIP` over graphs already written by `export_onnx(model, directory)`.

    `model` supplies the config and logit scale; int8 quantises the graphs on first use.
    """

    _check_precision(precision)
    root = Path(directory)
    image_path, text_path = root / IMAGE_FILE, root / TEXT_FILE
    if precision == "int8":
        image_path = quantize_int8(image_path, root / "image.int8.onnx")
        text_path = quantize_int8(text_path, root / "text.int8.onnx")
    image_sess, text_sess = session(image_path), session(text_path)
    embed, context = model.config.embed_dim, model.config.text.context_length

    def image_fn(pixels: torch.Tensor) -> torch.Tensor:
        if pixels.shape[0] == 0:
            return torch.zeros(0, embed)
        return torch.from_numpy(image_sess.run(None, {"pixels": pixels.float().contiguous().numpy()})[0])

    def text_fn(tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] > context:
            raise ValueError(f"text tokens have length {tokens.shape[1]}, longer than the model's context {context}")
        if tokens.shape[0] == 0:
            return torch.zeros(0, embed)
        cut = cut_to_longest(tokens.long(), model.config).contiguous()
        return torch.from_numpy(text_sess.run(None, {"tokens": cut.numpy()})[0])

    return FastCLIP(model, image_fn, text_fn, precision, "onnx", f"onnxruntime {precision} ({root})")


def _check_precision(precision: str) -> None:
    if precision not in ("fp32", "int8"):
        raise ValueError(f"the onnx backend runs fp32 or int8, not {precision!r}")
