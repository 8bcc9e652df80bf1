"""Parity with the `open_clip` package itself (runs only where open_clip imports).

open_clip needs torchvision; on this machine's CPU build of torch 2.13 it does not import, so this
module skips in the default suite. To run it (docs/interop.md):

    python -m venv /tmp/oc && /tmp/oc/bin/pip install torch==2.14.1 torchvision==0.29.1 open_clip_torch \
        -e '.[test]' && /tmp/oc/bin/python -m pytest tests/test_interop_open_clip.py
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

open_clip = pytest.importorskip("open_clip")

import clipforge  # noqa: E402
from clipforge.checkpoints import export_openclip  # noqa: E402

# open_clip model configs: the OpenAI ResNet and ViT families plus small odd ones.
SMALL_VIT = {
    "embed_dim": 48,
    "vision_cfg": {"image_size": 48, "layers": 2, "width": 96, "patch_size": 12, "head_width": 32, "mlp_ratio": 3.0},
    "text_cfg": {"context_length": 20, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
SMALL_RN = {
    "embed_dim": 40,
    "vision_cfg": {"image_size": 64, "layers": [1, 2, 1, 1], "width": 16, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 1},
}


def _openclip_model(model_cfg: dict, quick_gelu: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = dict(model_cfg, quick_gelu=quick_gelu)
    model = open_clip.model.CLIP(**cfg).eval()
    with torch.no_grad():  # random BatchNorm statistics, so eval-mode normalisation is exercised
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.normal_(1, 0.1)
    return model


def _inputs(model_cfg: dict) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    size = model_cfg["vision_cfg"]["image_size"]
    pixels = torch.randn(3, 3, size, size, generator=g)
    texts = ["a photo of a cat", "", "two green triangles to the left of a small star " * 3]
    tokens = open_clip.tokenize(texts, context_length=model_cfg["text_cfg"]["context_length"])
    return pixels, tokens


@pytest.mark.parametrize("model_cfg", [SMALL_VIT, SMALL_RN], ids=["vit", "resnet"])
@pytest.mark.parametrize("quick_gelu", [True, False], ids=["quickgelu", "gelu"])
def test_openclip_hub_dir_loads_exactly(tmp_path, model_cfg, quick_gelu):
    ref = _openclip_model(model_cfg, quick_gelu)
    torch.save(ref.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": dict(model_cfg, quick_gelu=quick_gelu)}))
    model, _, _ = clipforge.load(tmp_path, device="cpu")
    pixels, tokens = _inputs(model_cfg)
    with torch.no_grad():
        assert (model.encode_image(pixels) - ref.encode_image(pixels)).abs().max() < 1e-5
        assert (model.encode_text(tokens) - ref.encode_text(tokens)).abs().max() < 1e-5


@pytest.mark.parametrize("name", ["RN50", "ViT-B-32"])
def test_openai_architectures_match_bare_state_dict(tmp_path, name):
    ref = open_clip.create_model(name, pretrained=None, force_quick_gelu=True).eval()
    path = tmp_path / f"{name}.pt"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in ref.state_dict().items()}}, path)
    model, _, _ = clipforge.load(path, device="cpu", activation="quick_gelu")
    assert model.config.vision.kind == ("resnet" if name.startswith("RN") else "vit")
    size = model.config.vision.image_size
    pixels = torch.randn(2, 3, size, size)
    tokens = open_clip.tokenize(["a diagram", "a dog playing with a ball"])
    with torch.no_grad():
        assert (model.encode_image(pixels) - ref.encode_image(pixels)).abs().max() < 1e-4
        assert (model.encode_text(tokens) - ref.encode_text(tokens)).abs().max() < 1e-5


def test_export_to_openclip_loads_in_open_clip(tmp_path):
    model = clipforge.create_model("tiny-rn")
    export_openclip(model, tmp_path)
    cfg = json.loads((tmp_path / "open_clip_config.json").read_text())["model_cfg"]
    ref = open_clip.model.CLIP(**cfg).eval()
    sd = open_clip.factory.load_state_dict(str(tmp_path / "open_clip_model.safetensors"))
    ref.load_state_dict(sd, strict=True)
    pixels = torch.randn(2, 3, 64, 64)
    tokens = open_clip.tokenize(["a red circle", "a blue star"], context_length=16)
    with torch.no_grad():
        assert (model.encode_image(pixels) - ref.encode_image(pixels)).abs().max() < 1e-5
        assert (model.encode_text(tokens) - ref.encode_text(tokens)).abs().max() < 1e-5


def test_preprocessing_matches_open_clip_transform():
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    from clipforge.config import PreprocessConfig
    from clipforge.transforms import ImageTransform

    ref = open_clip.transform.image_transform(224, is_train=False)
    ours = ImageTransform(PreprocessConfig(image_size=224))
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera"):
        img = Image.fromarray(np.asarray(getattr(skimage_data, name)()))
        assert torch.equal(ours(img), ref(img)), name
