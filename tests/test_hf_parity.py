"""Exactness against Hugging Face transformers: CLIPModel directories load with identical features,
and clipforge's HF export loads strictly in transformers with identical features."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import CLIPConfig, CLIPModel  # noqa: E402

import clipforge  # noqa: E402
from clipforge.checkpoints import export, read_checkpoint  # noqa: E402

CONFIGS = {
    # ViT-B/32-like proportions, scaled down in depth to keep the suite fast.
    "b32-like": dict(
        text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=2, num_attention_heads=8),
        vision=dict(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=2,
            num_attention_heads=12,
            image_size=224,
            patch_size=32,
        ),
        projection_dim=512,
        act="quick_gelu",
    ),
    # Odd: patch 14, image 56, 3 heads, GELU, non-4 MLP ratio, short context, different eps.
    "odd-gelu": dict(
        text=dict(
            hidden_size=96,
            intermediate_size=200,
            num_hidden_layers=3,
            num_attention_heads=3,
            max_position_embeddings=24,
            layer_norm_eps=1e-6,
        ),
        vision=dict(
            hidden_size=48,
            intermediate_size=150,
            num_hidden_layers=3,
            num_attention_heads=3,
            image_size=56,
            patch_size=14,
            layer_norm_eps=1e-6,
        ),
        projection_dim=40,
        act="gelu",
    ),
    # Legacy configs (eos_token_id == 2) pool the text feature at argmax(input_ids).
    "legacy-eos": dict(
        text=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, eos_token_id=2),
        vision=dict(
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=16,
        ),
        projection_dim=32,
        act="quick_gelu",
    ),
}


def _hf_model(spec: dict) -> CLIPModel:
    torch.manual_seed(0)
    act = spec["act"]
    cfg = CLIPConfig(
        text_config=dict(spec["text"], hidden_act=act),
        vision_config=dict(spec["vision"], hidden_act=act),
        projection_dim=spec["projection_dim"],
    )
    model = CLIPModel(cfg).eval()
    with torch.no_grad():  # HF zero-inits biases and LN; randomise everything so every weight matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def _features(out) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _inputs(cfg: CLIPConfig) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    size = cfg.vision_config.image_size
    pixels = torch.randn(4, 3, size, size, generator=g)
    ctx = cfg.text_config.max_position_embeddings
    tokens = torch.randint(1, 49000, (4, ctx), generator=g)
    tokens[:, 0] = 49406
    for row, end in enumerate([3, ctx - 1, ctx // 2, 1]):
        tokens[row, end] = 49407
        tokens[row, end + 1 :] = 0  # clipforge pads with 0; HF pads with 49407 -- both must pool the same
    return pixels, tokens


@pytest.mark.parametrize("name", list(CONFIGS))
def test_hf_directory_loads_with_identical_features(tmp_path, name):
    ref = _hf_model(CONFIGS[name])
    ref.save_pretrained(tmp_path)
    model, _, _ = clipforge.load(tmp_path, device="cpu")
    pixels, tokens = _inputs(ref.config)
    with torch.no_grad():
        img_ref = _features(ref.get_image_features(pixel_values=pixels))
        txt_ref = _features(ref.get_text_features(input_ids=tokens))
        assert (model.encode_image(pixels) - img_ref).abs().max() < 1e-5
        assert (model.encode_text(tokens) - txt_ref).abs().max() < 1e-5
        out = model(pixels, tokens)
        ref_out = ref(input_ids=tokens, pixel_values=pixels)
        assert (out.logits_per_image - ref_out.logits_per_image).abs().max() < 1e-3
    assert model.config.text.pooling == ("argmax" if name == "legacy-eos" else "first_eot")


@pytest.mark.parametrize("name", ["b32-like", "odd-gelu"])
def test_export_to_hf_loads_strictly_in_transformers(tmp_path, name):
    ref = _hf_model(CONFIGS[name])
    ref.save_pretrained(tmp_path / "src")
    model, _, tokenizer = clipforge.load(tmp_path / "src", device="cpu")
    export(model, tmp_path / "out", "hf", tokenizer)
    back, info = CLIPModel.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    pixels, tokens = _inputs(ref.config)
    with torch.no_grad():
        assert (
            _features(back.eval().get_image_features(pixel_values=pixels)) - model.encode_image(pixels)
        ).abs().max() < 1e-5
        assert (_features(back.get_text_features(input_ids=tokens)) - model.encode_text(tokens)).abs().max() < 1e-5
    # The exported tokenizer is the one transformers' CLIPTokenizer reads.
    hf_tok = transformers.CLIPTokenizer.from_pretrained(tmp_path / "out")
    text = "a photo of a cat"
    assert hf_tok(text)["input_ids"] == tokenizer(text)[0][: len(hf_tok(text)["input_ids"])].tolist()


def test_native_roundtrip_and_hf_reload_are_bit_exact(tmp_path):
    ref = _hf_model(CONFIGS["odd-gelu"])
    ref.save_pretrained(tmp_path / "hf")
    model, _, tokenizer = clipforge.load(tmp_path / "hf", device="cpu")
    clipforge.save(model, tmp_path / "native", tokenizer)
    again, _, tok2 = clipforge.load(tmp_path / "native", device="cpu")
    for (k, a), (k2, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert torch.equal(tokenizer(["a red circle"]), tok2(["a red circle"]))
    assert read_checkpoint(tmp_path / "native").source_format == "native"
