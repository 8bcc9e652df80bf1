"""ViT options: the convolutional stem (`vision.stem_widths`) and mean pooling (`vision.pool`).

Both default off, so every existing checkpoint keeps its keys and numbers; with them on, a model
saves, loads, infers its architecture from weights, runs in the fast engine and exports (or is
refused with a clear message) like any other.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import random_batchnorm

import clipforge
from clipforge.adapt.prompts import encode_image_prompted
from clipforge.checkpoints import CheckpointError, export
from clipforge.checkpoints.openai import native_to_openai
from clipforge.config import VisionConfig, get_config
from clipforge.fast import optimize
from clipforge.fast.graph import ImageGraph

STEM = {"stem_widths": [8, 16]}  # tiny: patch 8 = two stride-2 convs, then a 2x2 patch embedding
DEEP = {"stem_widths": [8, 16, 16], "stem_depth": 2, "pool": "mean"}  # + a residual block per stage


def _model(vision: dict) -> clipforge.CLIP:
    torch.manual_seed(0)
    return random_batchnorm(clipforge.create_model("tiny", vision=vision)).eval()


def _pixels(n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_defaults_keep_the_openai_layout():
    cfg = get_config("tiny").vision
    assert cfg.stem_widths == () and cfg.pool == "cls"
    keys = set(clipforge.create_model("tiny").state_dict())
    assert not any(k.startswith("visual.stem") for k in keys)
    assert clipforge.create_model("tiny").visual.conv1.weight.shape == (128, 3, 8, 8)


def test_stem_shapes_and_grid():
    model = _model(STEM)
    v = model.visual
    assert [layer.conv.out_channels for layer in v.stem] == [8, 16]
    assert v.conv1.weight.shape == (128, 16, 2, 2)  # 8 px patches = 2 x 2 stem outputs of stride 4
    assert v.tokens(_pixels()).shape == (3, 1 + 4 * 4, 128)
    deep = _model(DEEP).visual
    assert [len(stage.blocks) for stage in deep.stem] == [1, 1, 1] and deep.conv1.weight.shape == (128, 16, 1, 1)
    assert get_config("tiny", vision=STEM).vision.stem_widths == (8, 16)  # lists from JSON become tuples


@pytest.mark.parametrize(
    "fields,match",
    [
        ({"stem_widths": (8, 16, 32, 64)}, "not divisible by the conv stem's stride 16"),
        ({"stem_widths": (8, 0)}, "positive channel counts"),
        ({"stem_widths": (8,), "stem_depth": 0}, "stem_depth must be >= 1"),
        ({"pool": "max"}, "vision.pool must be 'cls', 'mean', 'mean_then_ln' or 'map'"),
        ({"kind": "resnet", "layers": (1, 1, 1, 1), "pool": "mean"}, "apply to ViTs only"),
    ],
)
def test_bad_options_are_refused(fields, match):
    base = {"image_size": 32, "width": 128, "heads": 2, "patch_size": 8}
    with pytest.raises(ValueError, match=match):
        VisionConfig(**{**base, **fields})


def test_mean_pool_is_the_average_of_the_patch_readouts():
    model = _model({"pool": "mean"})
    v = model.visual
    with torch.no_grad():
        hidden = v.forward_hidden(_pixels())
        assert torch.allclose(v.pool(hidden), v.patch_features(hidden).mean(dim=1), atol=1e-6)
        assert torch.allclose(model.encode_image(_pixels()), v.patch_features(hidden).mean(dim=1), atol=1e-6)


@pytest.mark.parametrize("vision", [STEM, {"pool": "mean"}, DEEP], ids=["stem", "mean", "deep-stem-mean"])
def test_native_round_trip(tmp_path, vision):
    model = _model(vision)
    clipforge.save(model, tmp_path / "m")
    loaded, _, _ = clipforge.load(tmp_path / "m", device="cpu", backend="none")
    assert loaded.config.vision == model.config.vision
    for k, t in model.state_dict().items():
        assert torch.equal(t, loaded.state_dict()[k]), k
    with torch.no_grad():
        assert torch.equal(model.encode_image(_pixels()), loaded.encode_image(_pixels()))


@pytest.mark.parametrize("vision", [STEM, {**DEEP, "pool": "cls"}], ids=["stem", "deep-stem"])
def test_bare_state_dict_infers_the_stem(tmp_path, vision):
    model = _model(vision)
    torch.save(native_to_openai(model.state_dict()), tmp_path / "weights.pt")
    loaded, _, _ = clipforge.load(tmp_path / "weights.pt", device="cpu", activation="quick_gelu", backend="none")
    assert loaded.config.vision == model.config.vision
    with torch.no_grad():
        assert torch.equal(model.encode_image(_pixels()), loaded.encode_image(_pixels()))


@pytest.mark.parametrize("vision", [STEM, {"pool": "mean"}, DEEP], ids=["stem", "mean", "deep-stem-mean"])
def test_fast_paths_match_the_model(vision):
    model = _model(vision)
    pixels = _pixels(5)
    with torch.no_grad():
        ref = model.encode_image(pixels)
        assert (optimize(model, "fp32").encode_image(pixels) - ref).abs().max() <= 1e-4
        assert F.cosine_similarity(optimize(model, "bf16").encode_image(pixels), ref).min() >= 0.999
        assert F.cosine_similarity(optimize(model, "int8").encode_image(pixels), ref).min() >= 0.99
        assert (ImageGraph(model)(pixels) - ref).abs().max() <= 1e-5
        assert (encode_image_prompted(model.visual, pixels, []) - ref).abs().max() <= 1e-5
    assert not model.training and not any(m.training for m in model.modules())  # folding left it alone


def test_exports_refuse_what_the_format_cannot_hold(tmp_path):
    with pytest.raises(CheckpointError, match="no convolutional stem"):
        export(_model(STEM), tmp_path / "hf", "hf")
    with pytest.raises(CheckpointError, match="class token only"):
        export(_model({"pool": "mean"}), tmp_path / "hf2", "hf")
    with pytest.raises(CheckpointError, match="no convolutional stem"):
        export(_model(STEM), tmp_path / "oc", "openclip")


def test_openclip_export_of_mean_pooling_round_trips(tmp_path):
    model = _model({"pool": "mean"})
    export(model, tmp_path / "oc", "openclip")
    vision_cfg = json.loads((tmp_path / "oc" / "open_clip_config.json").read_text())["model_cfg"]["vision_cfg"]
    assert vision_cfg["pool_type"] == "avg" and vision_cfg["final_ln_after_pool"] is False
    loaded, _, _ = clipforge.load(tmp_path / "oc", device="cpu", backend="none")
    assert loaded.config.vision.pool == "mean"
    with torch.no_grad():
        assert (model.encode_image(_pixels()) - loaded.encode_image(_pixels())).abs().max() <= 1e-6


def test_openclip_config_with_unsupported_pooling_is_refused(tmp_path):
    export(_model({}), tmp_path / "oc", "openclip")
    path = tmp_path / "oc" / "open_clip_config.json"
    data = json.loads(path.read_text())
    data["model_cfg"]["vision_cfg"].update(pool_type="none")
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="vision_cfg.pool_type='none' is not supported"):
        clipforge.load(tmp_path / "oc", device="cpu")


def test_shapes_vit_hybrid_preset_builds():
    cfg = get_config("shapes-vit-hybrid")
    same = get_config("shapes-vit", vision={"stem_widths": [32, 64, 128], "stem_depth": 2, "pool": "mean"})
    assert cfg.replace(name=same.name) == same  # the preset is shapes-vit with a conv body and mean pooling
    model = clipforge.create_model("shapes-vit-hybrid").eval()
    v = model.visual
    assert [layer.conv.out_channels for layer in v.stem] == [32, 64, 128]
    assert v.conv1.weight.shape == (128, 128, 1, 1)  # 8 px patches = one stem output of stride 8
    with torch.no_grad():
        assert v.tokens(torch.randn(2, 3, 64, 64)).shape == (2, 1 + 8 * 8, 128)
        assert model.encode_image(torch.randn(2, 3, 64, 64)).shape == (2, 128)
    assert sum(p.numel() for p in v.parameters()) < 2_000_000
