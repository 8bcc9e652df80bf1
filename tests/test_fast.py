"""The fast inference engine (`clipforge.fast.optimize`) against the reference model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import random_batchnorm

import clipforge
from clipforge.fast import FastCLIP, default_options, optimize
from clipforge.fast.engine import torch_engine
from clipforge.zeroshot import classifier_weights

SOT, EOT = 49406, 49407
# ViT-B/32-sized layers (width 768/512, 12/8 heads, patch 32 at 224 px, context 77) but only two
# blocks per tower: the same kernels and packed shapes as ViT-B/32, in a few seconds.
B32_LAYERS = {"vision": {"layers": 2}, "text": {"layers": 2}}


def _model(name: str, **overrides) -> clipforge.CLIP:
    torch.manual_seed(0)
    return random_batchnorm(clipforge.create_model(name, **overrides))


def _inputs(model: clipforge.CLIP, batch: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    size, ctx = model.config.vision.image_size, model.config.text.context_length
    pixels = torch.randn(batch, 3, size, size, generator=g)
    lengths = [ctx, 2, 7, 3, ctx // 2][:batch]  # full context, bare SOT+EOT, ragged
    tokens = torch.zeros(len(lengths), ctx, dtype=torch.long)
    for i, n in enumerate(lengths):
        tokens[i, 0] = SOT
        tokens[i, 1 : n - 1] = torch.randint(1, SOT - 1, (n - 2,), generator=g)
        tokens[i, n - 1] = EOT
    return pixels, tokens


def _reference(model, pixels, tokens):
    with torch.no_grad():
        return model.encode_image(pixels), model.encode_text(tokens)


@pytest.mark.parametrize(
    "name,overrides",
    [("tiny", {}), ("tiny-rn", {}), ("small", {}), ("ViT-B-32", B32_LAYERS)],
    ids=["tiny-vit", "tiny-resnet", "small-gelu", "b32-layers"],
)
def test_fp32_matches_model(name, overrides):
    model = _model(name, **overrides)
    pixels, tokens = _inputs(model)
    ref_image, ref_text = _reference(model, pixels, tokens)
    engine = optimize(model, "fp32")
    assert (engine.encode_image(pixels) - ref_image).abs().max() <= 1e-4
    assert (engine.encode_text(tokens) - ref_text).abs().max() <= 1e-4


@pytest.mark.parametrize("name,overrides", [("tiny", {}), ("tiny-rn", {}), ("ViT-B-32", B32_LAYERS)])
@pytest.mark.parametrize("residual_fp32", [False, True], ids=["bf16-stream", "fp32-stream"])
def test_bf16_cosine(name, overrides, residual_fp32):
    model = _model(name, **overrides)
    pixels, tokens = _inputs(model)
    ref_image, ref_text = _reference(model, pixels, tokens)
    engine = optimize(model, "bf16", residual_fp32=residual_fp32)
    img, txt = engine.encode_image(pixels), engine.encode_text(tokens)
    assert img.dtype == txt.dtype == torch.float32
    assert F.cosine_similarity(img, ref_image).min() >= 0.999
    assert F.cosine_similarity(txt, ref_text).min() >= 0.999


def test_int8_agreement():
    model = _model("small")
    pixels, tokens = _inputs(model)
    ref_image, ref_text = _reference(model, pixels, tokens)
    engine = optimize(model, "int8")
    assert F.cosine_similarity(engine.encode_image(pixels), ref_image).min() >= 0.99
    assert F.cosine_similarity(engine.encode_text(tokens), ref_text).min() >= 0.99


def test_portable_kernels_match_model():
    """The `aten` kernels (used off-CPU or without oneDNN) give the same features."""
    model = _model("tiny")
    pixels, tokens = _inputs(model)
    ref_image, ref_text = _reference(model, pixels, tokens)
    engine = torch_engine(model, "fp32", kind="aten")
    assert (engine.encode_image(pixels) - ref_image).abs().max() <= 1e-4
    assert (engine.encode_text(tokens) - ref_text).abs().max() <= 1e-4


def test_text_edge_cases():
    model = _model("tiny")
    engine = optimize(model, "fp32")
    _, tokens = _inputs(model)
    same = tokens[[1, 1, 1]]  # equal lengths: nothing to pack
    short = tokens[:, :20] if tokens.shape[1] > 20 else tokens[2:4, :8]
    no_eot = torch.randint(1, 1000, (2, 6))  # argmax fallback, like the model
    for batch in (same, tokens[1:2], short, no_eot, tokens[[4, 0, 2]]):
        with torch.no_grad():
            ref = model.encode_text(batch)
        assert (engine.encode_text(batch) - ref).abs().max() <= 1e-4
    assert engine.encode_text(tokens[:0]).shape == (0, model.config.embed_dim)


def test_argmax_pooling_config():
    model = _model("tiny", text={"pooling": "argmax", "eot_token_id": 2})
    _, tokens = _inputs(model)
    with torch.no_grad():
        ref = model.encode_text(tokens)
    assert (optimize(model, "fp32").encode_text(tokens) - ref).abs().max() <= 1e-4


def test_engine_interface_and_normalize():
    model = _model("tiny")
    pixels, tokens = _inputs(model, batch=3)
    engine = optimize(model, "fp32")
    assert isinstance(engine, FastCLIP)
    assert engine.config is model.config and engine.device == model.device and engine.dtype == torch.float32
    assert engine.logit_scale is model.logit_scale
    feats = engine.encode_image(pixels, normalize=True)
    assert torch.allclose(feats.norm(dim=-1), torch.ones(3), atol=1e-5)
    with torch.no_grad():
        ref = model.encode_image(pixels, normalize=True)
    assert (feats - ref).abs().max() <= 1e-4
    # the engine drops into code written for the model, e.g. zero-shot classifier weights
    tok = clipforge.get_tokenizer("tiny")
    w_engine = classifier_weights(engine, tok, ["cat", "dog"], ["a photo of a {}."])
    w_model = classifier_weights(model, tok, ["cat", "dog"], ["a photo of a {}."])
    assert (w_engine - w_model).abs().max() <= 1e-4
    assert "fp32" in repr(engine)


def test_model_is_left_unchanged():
    model = _model("tiny-rn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimize(model, "bf16")
    optimize(model, "int8")
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before)


def test_bad_inputs_and_options():
    model = _model("tiny")
    engine = optimize(model, "fp32")
    with pytest.raises(ValueError, match="precision"):
        optimize(model, "fp8")
    with pytest.raises(ValueError, match="backend"):
        optimize(model, "fp32", backend="tvm")
    with pytest.raises(ValueError, match="pixels"):
        engine.encode_image(torch.randn(1, 3, 17, 17))
    with pytest.raises(ValueError, match="context"):
        engine.encode_text(torch.ones(1, model.config.text.context_length + 1, dtype=torch.long))


def test_default_options():
    precision, backend = default_options("cpu")
    assert precision == "fp32" and backend == "torch"
    assert optimize(_model("tiny")).precision == "fp32"


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_compiled_engine(precision):
    model = _model("tiny")
    pixels, tokens = _inputs(model)
    ref_image, ref_text = _reference(model, pixels, tokens)
    engine = optimize(model, precision, compile=True)
    img, txt = engine.encode_image(pixels), engine.encode_text(tokens)
    if precision == "fp32":
        assert (img - ref_image).abs().max() <= 1e-4 and (txt - ref_text).abs().max() <= 1e-4
    else:
        assert F.cosine_similarity(img, ref_image).min() >= 0.999
        assert F.cosine_similarity(txt, ref_text).min() >= 0.999


@pytest.mark.parametrize("name", ["tiny", "tiny-rn"])
def test_large_batches_run_in_chunks_with_the_same_features(name):
    model = _model(name)
    pixels, tokens = _inputs(model)
    engine = optimize(model, "fp32")
    whole_image, whole_text = engine.encode_image(pixels), engine.encode_text(tokens)
    calls = []
    image_fn, text_fn = engine._image, engine._text
    engine._image = lambda x: calls.append(("image", len(x))) or image_fn(x)
    engine._text = lambda x: calls.append(("text", len(x))) or text_fn(x)
    engine.image_chunk, engine.text_chunk = 2, 3
    assert torch.allclose(engine.encode_image(pixels), whole_image, atol=1e-5)
    assert torch.allclose(engine.encode_text(tokens), whole_text, atol=1e-5)
    assert calls == [("image", 2), ("image", 2), ("image", 1), ("text", 3), ("text", 2)]


def test_chunk_sizes_follow_the_token_count():
    from clipforge.fast.engine import image_chunk

    assert image_chunk(clipforge.create_model("ViT-B-32", **B32_LAYERS)) == 32
    assert image_chunk(clipforge.create_model("ViT-B-16", **B32_LAYERS)) == 8
    assert image_chunk(_model("tiny-rn")) == 32
