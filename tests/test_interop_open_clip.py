"""Parity with the `open_clip` package itself (runs only where open_clip imports).

open_clip needs torchvision; on this machine's CPU build of torch 2.13 it does not import, so this
module skips in the default suite. To run it (docs/interop.md):

    python -m venv /tmp/oc && /tmp/oc/bin/pip install torch==2.14.1 torchvision==0.29.1 open_clip_torch \
        -e '.[test]' && /tmp/oc/bin/python -m pytest tests/test_interop_open_clip.py
"""

from __future__ import annotations

import copy
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

open_clip = pytest.importorskip("open_clip")

import clipforge  # noqa: E402
from clipforge.checkpoints import CheckpointError, build_model, export_openclip, read_checkpoint  # noqa: E402
from clipforge.checkpoints.io import save_safetensors  # noqa: E402
from clipforge.checkpoints.openclip import config_from_openclip_json  # noqa: E402

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


# --- OpenCLIP's model zoo: every shipped config, cut to 2 layers, against open_clip's own model --------------

ZOO = sorted((Path(open_clip.__file__).parent / "model_configs").glob("*.json"))
CLIP_VOCAB = 49408


def _cut(model_cfg: dict) -> dict:
    """2 blocks per tower (1 per ResNet stage), a 4 x 4 patch grid (2 x 2 for ResNets) and vocabularies beyond
    the CLIP BPE's cut to 50,000. Widths, MLP widths and patch sizes stay as shipped, so the shape signature
    of bare files is the family's."""
    cfg = copy.deepcopy(model_cfg)
    vc, tc = cfg["vision_cfg"], cfg["text_cfg"]
    resnet = isinstance(vc["layers"], list)
    vc["layers"] = [1, 1, 1, 1] if resnet else 2
    vc["image_size"] = 64 if resnet else 4 * vc["patch_size"]
    tc["layers"] = 2
    if tc.get("vocab_size", CLIP_VOCAB) > CLIP_VOCAB:
        tc["vocab_size"] = 50000
    return cfg


def _perturbed(model_cfg: dict) -> torch.nn.Module:
    """open_clip's model with every parameter moved away from its initial value (LayerNorm weights,
    LayerScale gammas and zero biases included), so no option can hide behind an identity."""
    towers = {k: v for k, v in model_cfg.items() if k != "quick_gelu"}
    model = _openclip_model(towers, bool(model_cfg.get("quick_gelu")))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1 + 0.2 * torch.randn(p.shape, generator=g)).add_(0.02 * torch.randn(p.shape, generator=g))
    return model


def _zoo_tokens(model_cfg: dict) -> torch.Tensor:
    """CLIP BPE tokens, or for a Hugging Face tokenizer random ids with an EOS at varied places and padding."""
    tc = model_cfg["text_cfg"]
    ctx = tc.get("context_length", 77)
    if not tc.get("hf_tokenizer_name"):
        texts = ["a photo of a cat", "", "two green triangles left of a star " * 4]
        return open_clip.tokenize(texts, context_length=ctx)
    tokens = torch.randint(3, tc["vocab_size"], (3, ctx), generator=torch.Generator().manual_seed(3))
    for row, end in enumerate((5, 1, ctx - 1)):
        tokens[row, end] = tc.get("eos_id", 2)
        tokens[row, end + 1 :] = 0
    return tokens


def _assert_same(model: torch.nn.Module, ref: torch.nn.Module, pixels: torch.Tensor, tokens: torch.Tensor) -> None:
    with torch.no_grad():
        image = (model.encode_image(pixels, normalize=True) - ref.encode_image(pixels, normalize=True)).abs().max()
        text = (model.encode_text(tokens, normalize=True) - ref.encode_text(tokens, normalize=True)).abs().max()
    assert image < 1e-5 and text < 1e-5, (float(image), float(text))


def _bare_refusal(model_cfg: dict) -> str | None:
    """What a bare file of this config is refused for (options its weights do not record), if anything."""
    if model_cfg["vision_cfg"].get("no_ln_pre"):
        return "no_ln_pre"
    if model_cfg["text_cfg"].get("vocab_size", CLIP_VOCAB) > CLIP_VOCAB:
        return "text vocabulary"
    return None


@pytest.mark.parametrize("path", ZOO, ids=[p.stem for p in ZOO])
def test_model_zoo_loads_exactly_or_is_refused(tmp_path, path):
    data = json.loads(path.read_text())
    try:
        config_from_openclip_json(data)
    except CheckpointError:
        pytest.skip("refused by name (asserted in tests/test_openclip_configs.py)")
    model_cfg = _cut(data)
    ref = _perturbed(model_cfg)
    size = model_cfg["vision_cfg"]["image_size"]
    pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    tokens = _zoo_tokens(model_cfg)
    state = ref.state_dict()

    hub = tmp_path / "hub"
    hub.mkdir()
    torch.save(state, hub / "open_clip_pytorch_model.bin")
    (hub / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg}))
    _assert_same(build_model(read_checkpoint(hub)), ref, pixels, tokens)
    if model_cfg["text_cfg"].get("hf_tokenizer_name"):  # never the CLIP BPE in its place
        with pytest.raises(CheckpointError, match="hf_tokenizer_name"):
            clipforge.load(hub, device="cpu")
    shutil.rmtree(hub)

    act = "quick_gelu" if model_cfg.get("quick_gelu") else "gelu"
    bare = tmp_path / "bare.safetensors"
    save_safetensors(state, bare)
    wrapped = tmp_path / "train.pt"
    torch.save({"epoch": 1, "state_dict": {"module." + k: v for k, v in state.items()}}, wrapped)
    for file in (bare, wrapped):
        refusal = _bare_refusal(model_cfg)
        if refusal:
            with pytest.raises(CheckpointError, match=refusal):
                read_checkpoint(file, activation=act)
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ckpt = read_checkpoint(file, activation=act)
        assert not [w for w in caught if "guessed" in str(w.message)], "a shipped family's heads were guessed"
        _assert_same(build_model(ckpt), ref, pixels, tokens)
        file.unlink()
