"""ONNX export of both towers and the onnxruntime backend, checked against torch."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

import clipforge  # noqa: E402
from clipforge.cli.main import main  # noqa: E402
from clipforge.fast import optimize  # noqa: E402
from clipforge.fast.graph import cut_to_longest  # noqa: E402
from clipforge.fast.onnx import engine_from_export, session, verify_onnx  # noqa: E402

SOT, EOT = 49406, 49407


@pytest.fixture(scope="module")
def model() -> clipforge.CLIP:
    torch.manual_seed(0)
    return clipforge.create_model("tiny")


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """One export for the module, made through `optimize(..., backend="onnx")`."""
    directory = tmp_path_factory.mktemp("onnx")
    engine = optimize(model, "fp32", backend="onnx", onnx_dir=str(directory))
    assert engine.backend == "onnx" and engine.precision == "fp32"
    return directory


def _tokens(ctx: int, lengths: list[int]) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    tokens = torch.zeros(len(lengths), ctx, dtype=torch.long)
    for i, n in enumerate(lengths):
        tokens[i, 0] = SOT
        tokens[i, 1 : n - 1] = torch.randint(1, SOT - 1, (n - 2,), generator=g)
        tokens[i, n - 1] = EOT
    return tokens


def test_export_verifies_within_tolerance(model, exported):
    image_max_abs, text_max_abs = verify_onnx(model, exported)
    assert image_max_abs <= 1e-4 and text_max_abs <= 1e-4
    meta = json.loads((exported / "onnx_config.json").read_text())
    assert meta["image"]["input"] == "pixels" and meta["text"]["input"] == "tokens"


def test_dynamic_batch_and_length(model, exported):
    image, text = session(exported / "image.onnx"), session(exported / "text.onnx")
    ctx = model.config.text.context_length
    for batch, lengths in ((1, [ctx]), (4, [3, 9, 2, 5])):
        pixels = torch.randn(batch, 3, 32, 32)
        tokens = _tokens(ctx, lengths)
        with torch.no_grad():
            ref_image, ref_text = model.encode_image(pixels), model.encode_text(tokens)
        got_image = torch.from_numpy(image.run(None, {"pixels": pixels.numpy()})[0])
        got_text = torch.from_numpy(text.run(None, {"tokens": cut_to_longest(tokens, model.config).numpy()})[0])
        assert (got_image - ref_image).abs().max() <= 1e-4
        assert (got_text - ref_text).abs().max() <= 1e-4


def test_onnx_engine_fp32_and_int8(model, exported):
    pixels = torch.randn(3, 3, 32, 32)
    tokens = _tokens(model.config.text.context_length, [4, 16, 7])
    with torch.no_grad():
        ref_image, ref_text = model.encode_image(pixels), model.encode_text(tokens)
    engine = engine_from_export(model, exported, "fp32")
    assert engine.backend == "onnx"
    assert (engine.encode_image(pixels) - ref_image).abs().max() <= 1e-4
    assert (engine.encode_text(tokens) - ref_text).abs().max() <= 1e-4
    assert engine.encode_text(tokens[:0]).shape == (0, model.config.embed_dim)
    int8 = engine_from_export(model, exported, "int8")
    assert F.cosine_similarity(int8.encode_image(pixels), ref_image).min() >= 0.98
    assert F.cosine_similarity(int8.encode_text(tokens), ref_text).min() >= 0.98


def test_bf16_is_refused(model):
    with pytest.raises(ValueError, match="fp32 or int8"):
        optimize(model, "bf16", backend="onnx")


def test_cli_export(model, tmp_path, capsys):
    ckpt = clipforge.save(model, tmp_path / "ckpt")
    out = tmp_path / "onnx"
    assert main(["export", "--model", str(ckpt), str(out), "--format", "onnx", "--precision", "int8", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["verified"] and summary["image_max_abs"] <= 1e-4 and summary["text_max_abs"] <= 1e-4
    assert all((out / f).is_file() for f in ("image.onnx", "text.onnx", "image.int8.onnx", "text.int8.onnx"))
    assert main(["export", str(ckpt), str(out), "--model", str(tmp_path)]) == 2  # checkpoint given twice
