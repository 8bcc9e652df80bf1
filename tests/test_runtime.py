"""Choosing precision and backend: `clipforge.load(precision=, backend=)` and the commands' --precision/--backend."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import clipforge
from clipforge.api import resolve_runtime
from clipforge.cli.main import main
from clipforge.evaluate import evaluate
from clipforge.fast import FastCLIP

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    clipforge.save(clipforge.create_model("tiny-rn"), d, clipforge.get_tokenizer("tiny-rn"))
    return d


@pytest.mark.parametrize(
    "asked,expected",
    [
        (("auto", "auto"), ("fp32", "torch")),
        (("bf16", "auto"), ("bf16", "torch")),
        (("int8", "auto"), ("int8", "torch")),
        (("auto", "onnx"), ("fp32", "onnx")),
        (("int8", "onnx"), ("int8", "onnx")),
        (("auto", "none"), ("fp32", "none")),
        (("fp16", "none"), ("fp16", "none")),
        (("fp32", None), ("fp32", "none")),
    ],
)
def test_automatic_choices_on_the_cpu(asked, expected):
    assert resolve_runtime(*asked, CPU) == expected


@pytest.mark.parametrize(
    "precision,backend,message",
    [
        ("int8", "none", "needs an engine"),
        ("fp16", "torch", "fp16 needs backend 'none'"),
        ("bf16", "onnx", "runs fp32 or int8"),
        ("fp8", "auto", "precision 'fp8'"),
        ("fp32", "tvm", "backend 'tvm'"),
    ],
)
def test_impossible_combinations_are_refused(precision, backend, message):
    with pytest.raises(ValueError, match=message):
        resolve_runtime(precision, backend, CPU)


def test_automatic_choices_on_cuda(monkeypatch):
    """Decided without a GPU: CUDA gets the plain model in bf16 (fp16 where bf16 is unsupported)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    cuda = torch.device("cuda")
    assert resolve_runtime("auto", "auto", cuda) == ("bf16", "none")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_runtime("auto", "auto", cuda) == ("fp16", "none")
    with pytest.raises(ValueError, match="CPU only"):
        resolve_runtime("int8", "auto", cuda)


def _features(model, preprocess, tokenizer):
    from skimage import data

    pixels = torch.stack([preprocess(Image.fromarray(getattr(data, n)())) for n in ("astronaut", "coffee", "chelsea")])
    tokens = tokenizer(["a photo of a cat", "a red circle", "coffee"])
    with torch.no_grad():
        return model.encode_image(pixels, normalize=True).float(), model.encode_text(tokens, normalize=True).float()


def test_load_returns_engines_that_match_the_model(model_dir):
    plain, preprocess, tokenizer = clipforge.load(model_dir, device="cpu")
    ref_img, ref_txt = _features(plain, preprocess, tokenizer)
    engine, _, _ = clipforge.load(model_dir, device="cpu", precision="auto", backend="auto")
    assert isinstance(engine, FastCLIP) and engine.precision == "fp32" and engine.backend == "torch"
    img, txt = _features(engine, preprocess, tokenizer)
    assert (img - ref_img).abs().max() <= 1e-4 and (txt - ref_txt).abs().max() <= 1e-4
    int8, _, _ = clipforge.load(model_dir, device="cpu", precision="int8", backend="torch")
    assert int8.precision == "int8"
    img8, txt8 = _features(int8, preprocess, tokenizer)
    assert not torch.equal(img8, img)  # really quantised ...
    assert (img8 * ref_img).sum(-1).min() > 0.98 and (txt8 * ref_txt).sum(-1).min() > 0.98  # ... and still close


def test_embed_command_records_the_runtime(model_dir, tmp_path):
    from skimage import data

    Image.fromarray(data.astronaut()).save(tmp_path / "a.png")
    Image.fromarray(data.chelsea()).save(tmp_path / "b.png")
    runs = {"none": ["--backend", "none"], "int8": ["--precision", "int8"], "auto": []}
    feats = {}
    for name, extra in runs.items():
        out = tmp_path / name
        assert main(["embed", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--model", str(model_dir),
                     "--out", str(out), "--device", "cpu", *extra]) == 0  # fmt: skip
        feats[name] = np.load(out / "image_embeddings.npy")
        runtime = json.loads((out / "summary.json").read_text())["runtime"]
        assert (runtime == "plain model float32") if name == "none" else runtime.startswith("torch ")
        assert runtime.endswith({"none": "float32", "int8": "int8", "auto": "fp32"}[name])
    assert np.abs(feats["auto"] - feats["none"]).max() <= 1e-4
    assert (feats["int8"] * feats["none"]).sum(-1).min() > 0.98


def test_eval_caches_each_runtime_apart(model_dir, tmp_path):
    kwargs = dict(out_dir=tmp_path / "out", max_samples=24, cache_dir=tmp_path / "cache", progress=False, plots=False)
    ds = "shapes:colour?image_size=32"
    fp32 = evaluate("zeroshot", ds, str(model_dir), backend="none", **kwargs)[0].result
    bf16 = evaluate("zeroshot", ds, str(model_dir), precision="bf16", backend="auto", **kwargs)[0].result
    assert fp32.model["runtime"] == "plain model float32"
    assert bf16.model["runtime"].startswith("torch ") and "bf16" in bf16.model["runtime"]
    assert len(list((tmp_path / "cache").rglob("img-*.npy"))) == 2  # the bf16 run did not reuse fp32 features


def test_load_with_the_onnx_backend(model_dir):
    pytest.importorskip("onnxruntime")
    plain, preprocess, tokenizer = clipforge.load(model_dir, device="cpu")
    engine, _, _ = clipforge.load(model_dir, device="cpu", backend="onnx")
    assert engine.backend == "onnx" and engine.precision == "fp32"
    for got, ref in zip(_features(engine, preprocess, tokenizer), _features(plain, preprocess, tokenizer)):
        assert (got - ref).abs().max() <= 1e-4
