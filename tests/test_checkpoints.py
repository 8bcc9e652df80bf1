"""Checkpoint formats: OpenAI TorchScript archives and state dicts, OpenCLIP files, safety, errors."""

from __future__ import annotations

import json
import os
import pickle
import warnings

import pytest
import torch
from safetensors.torch import save_file

import clipforge
from clipforge.checkpoints import CheckpointError, export, read_checkpoint
from clipforge.checkpoints.openai import native_to_openai


def _openai_state(model) -> dict[str, torch.Tensor]:
    return native_to_openai(model.state_dict())


def _same_features(a, b, size: int, ctx: int, tol: float = 0.0) -> None:
    torch.manual_seed(3)
    pixels = torch.randn(2, 3, size, size)
    tokens = torch.tensor([[49406, 320, 1125, 49407] + [0] * (ctx - 4), [49406] + [400] * (ctx - 2) + [49407]])
    with torch.no_grad():
        assert (a.encode_image(pixels) - b.encode_image(pixels)).abs().max() <= tol
        assert (a.encode_text(tokens) - b.encode_text(tokens)).abs().max() <= tol


@pytest.mark.parametrize("name", ["ViT-B-32", "RN50"])
def test_openai_key_layout(name):
    sd = _openai_state(clipforge.create_model(name))
    # OpenAI's released ViT-B/32 has 302 tensors; RN50 has its ResNet stem, stages and attention pool.
    if name == "ViT-B-32":
        assert len(sd) == 302
        assert sd["visual.proj"].shape == (768, 512) and sd["text_projection"].shape == (512, 512)
        assert sd["visual.transformer.resblocks.0.attn.in_proj_weight"].shape == (3 * 768, 768)
    else:
        assert sd["visual.attnpool.positional_embedding"].shape == (50, 2048)
        assert "visual.layer1.0.downsample.0.weight" in sd and "visual.layer2.0.downsample.1.running_var" in sd
        assert sd["visual.attnpool.c_proj.weight"].shape == (1024, 2048)


@pytest.mark.parametrize("name", ["tiny", "tiny-rn"])
def test_openai_state_dict_infers_architecture(tmp_path, name):
    model = clipforge.create_model(name)
    path = tmp_path / "weights.pt"
    torch.save(_openai_state(model), path)
    loaded, _, _ = clipforge.load(path, device="cpu", activation="quick_gelu")
    assert loaded.config.vision == model.config.vision
    assert loaded.config.text == model.config.text
    assert loaded.config.embed_dim == model.config.embed_dim
    _same_features(model, loaded, model.config.vision.image_size, model.config.text.context_length)


def test_bare_state_dict_warns_about_activation(tmp_path):
    model = clipforge.create_model("tiny")
    save_file(_openai_state(model), tmp_path / "m.safetensors")
    with pytest.warns(UserWarning, match="activation"):
        ckpt = read_checkpoint(tmp_path / "m.safetensors")
    assert ckpt.config.vision.act == "gelu" and ckpt.source_format == "openai"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert read_checkpoint(tmp_path / "m.safetensors", activation="quick_gelu").config.text.act == "quick_gelu"
    assert not [w for w in caught if "activation" in str(w.message)]


def test_torchscript_archive_read_without_running_code(tmp_path):
    """OpenAI ships fp16 TorchScript archives; their tensors are read, their code never run."""
    model = clipforge.create_model("tiny")
    jit_src = clipforge.create_model("tiny").half()
    jit_src.load_state_dict({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()})
    traced = torch.jit.trace(_OpenAILayout(jit_src), torch.randn(1, 3, 32, 32).half(), check_trace=False)
    path = tmp_path / "ViT-tiny.pt"
    traced.save(str(path))
    ckpt = read_checkpoint(path)
    assert ckpt.source_format == "openai-torchscript"
    assert ckpt.config.vision.act == "quick_gelu"  # OpenAI's archives are QuickGELU models
    loaded, _, _ = clipforge.load(path, device="cpu")
    assert loaded.dtype == torch.float32
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v.half().float()), k


class _OpenAILayout(torch.nn.Module):
    """Attribute names as in OpenAI's `CLIP` class, so the traced archive has OpenAI's key layout."""

    def __init__(self, model) -> None:
        super().__init__()
        self.visual = model.visual
        for name in ("transformer", "token_embedding", "positional_embedding", "ln_final", "text_projection"):
            setattr(self, name, getattr(model.text, name))
        self.logit_scale = model.logit_scale
        self.register_buffer("input_resolution", torch.tensor(32))

    def forward(self, pixels):
        return self.visual(pixels) + self.logit_scale


def test_torchscript_reader_refuses_foreign_globals(tmp_path):
    import zipfile

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("evil/data.pkl", pickle.dumps({"x": Evil()}, protocol=2))
        zf.writestr("evil/constants.pkl", pickle.dumps(()))
        zf.writestr("evil/code/__torch__/m.py", "")
    with pytest.raises(CheckpointError, match="posix.system|os.system"):
        read_checkpoint(path)


def test_pickle_with_arbitrary_globals_is_refused(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "cfg": argparse_namespace()}, path)
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        read_checkpoint(path)


def argparse_namespace():
    import argparse

    return argparse.Namespace(lr=1.0)


@pytest.mark.parametrize("wrapper", ["state_dict", "model", "module_prefix", "compiled"])
def test_training_checkpoint_wrappers_are_unwrapped(tmp_path, wrapper):
    model = clipforge.create_model("tiny")
    sd = _openai_state(model)
    obj = {
        "state_dict": {"epoch": 1, "state_dict": sd, "optimizer": {"state": {}, "param_groups": []}},
        "model": {"model": sd, "step": 7},
        "module_prefix": {"state_dict": {"module." + k: v for k, v in sd.items()}},
        "compiled": {"_orig_mod." + k: v for k, v in sd.items()},
    }[wrapper]
    torch.save(obj, tmp_path / "ckpt.pt")
    loaded, _, _ = clipforge.load(tmp_path / "ckpt.pt", device="cpu", activation="quick_gelu")
    _same_features(model, loaded, 32, 16)


def test_openclip_directory_and_export_roundtrip(tmp_path):
    model = clipforge.create_model("tiny-rn")
    export(model, tmp_path / "oc", "openclip")
    cfg = json.loads((tmp_path / "oc" / "open_clip_config.json").read_text())
    assert cfg["model_cfg"]["quick_gelu"] is True and cfg["model_cfg"]["vision_cfg"]["layers"] == [1, 1, 1, 1]
    loaded, _, _ = clipforge.load(tmp_path / "oc", device="cpu")
    assert read_checkpoint(tmp_path / "oc").source_format == "openclip"
    _same_features(model, loaded, 64, 16)


def test_mismatch_error_names_keys_and_how_to_fix(tmp_path):
    model = clipforge.create_model("tiny")
    sd = _openai_state(model)
    del sd["visual.ln_post.weight"]
    torch.save(sd, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): \['visual.ln_post.weight'\].*config="):
        clipforge.load(tmp_path / "broken.pt", activation="gelu")


def test_config_override_wins_and_is_validated(tmp_path):
    model = clipforge.create_model("tiny")
    torch.save(_openai_state(model), tmp_path / "w.pt")
    cfg = model.config.replace(text={"heads": 4})  # heads are not stored in weights; an override sets them
    loaded, _, _ = clipforge.load(tmp_path / "w.pt", config=cfg)
    assert loaded.text.transformer.resblocks[0].attn.heads == 4
    with pytest.raises(CheckpointError, match="shape mismatches"):
        clipforge.load(tmp_path / "w.pt", config="ViT-B-32")


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "not a readable"),
        (b"definitely not a checkpoint", "not a readable"),
        (b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage", "safetensors"),
    ],
)
def test_garbage_files_give_clear_errors(tmp_path, content, match):
    path = tmp_path / "x.bin"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        read_checkpoint(path)


def test_unknown_layout_and_missing_path(tmp_path):
    torch.save({"encoder.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="unrecognised weight layout"):
        read_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no such file"):
        read_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a recognised checkpoint directory"):
        read_checkpoint(tmp_path / "empty")


def test_native_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    model = clipforge.create_model("tiny")
    clipforge.save(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "m" / "config.json").read_text())["format"] == "clipforge"


def test_precision_casts_model():
    model, _, _ = clipforge.load(_saved_tiny(), device="cpu", precision="bf16")
    assert model.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        clipforge.load(_saved_tiny(), precision="fp8")


def _saved_tiny():
    import tempfile

    d = tempfile.mkdtemp()
    clipforge.save(clipforge.create_model("tiny"), d)
    return d


# ----------------------------------------------------------------------------- lying configs


def _hf_dir(tmp_path, name="hf", **overrides):
    """A tiny model exported as a Hugging Face directory, with `vision_config` fields overridden."""
    d = tmp_path / name
    export(clipforge.create_model("tiny"), d, "hf")
    cfg = json.loads((d / "config.json").read_text())
    cfg["vision_config"].update(overrides)
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def _no_weights_read(monkeypatch):
    from clipforge.checkpoints import loader

    def forbidden(path):
        raise AssertionError(f"{path}: weights were read before the config was checked against their headers")

    monkeypatch.setattr(loader, "read_tensor_file", forbidden)


def _no_model_built(monkeypatch):
    """Fail if a real (non-meta) model is instantiated."""
    from clipforge.checkpoints import loader

    real = loader.CLIP

    def guarded(config):
        if torch.empty(0).device.type != "meta":
            raise AssertionError(f"a model of {config.vision.layers} vision layers was allocated")
        return real(config)

    monkeypatch.setattr(loader, "CLIP", guarded)


@pytest.mark.parametrize(
    "lie,match",
    [
        (dict(num_hidden_layers=200_000), r"block counts differ \(vit: config 200000, weights 2\)"),
        (dict(hidden_size=65_536, num_attention_heads=64, intermediate_size=262_144), "shape mismatches"),
        (dict(image_size=224_000, patch_size=8), "shape mismatches"),
    ],
)
def test_a_lying_hf_config_is_refused_from_the_headers_before_anything_is_allocated(tmp_path, monkeypatch, lie, match):
    """config.json made `load` allocate whatever it said (a 12 GB attempt; 200,000 layers took 5.7 GB, 22 s)."""
    d = _hf_dir(tmp_path, **lie)
    _no_weights_read(monkeypatch)
    _no_model_built(monkeypatch)
    with pytest.raises(CheckpointError, match=match) as info:
        clipforge.load(d, device="cpu")
    assert str(d) in str(info.value)


def test_a_lying_config_with_pickled_weights_is_refused_before_the_model_is_built(tmp_path, monkeypatch):
    d = _hf_dir(tmp_path, num_hidden_layers=200_000)
    weights = d / "model.safetensors"
    from safetensors.torch import load_file

    torch.save(load_file(weights), d / "pytorch_model.bin")  # no header to read: checked after reading
    weights.unlink()
    _no_model_built(monkeypatch)
    with pytest.raises(CheckpointError, match="block counts differ"):
        clipforge.load(d, device="cpu")


def test_the_same_directory_with_an_honest_config_loads(tmp_path):
    d = _hf_dir(tmp_path)
    model, _, _ = clipforge.load(d, device="cpu")
    assert model.config.vision.layers == 2


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("hidden_size", "64", r"vision_config.hidden_size must be a positive integer, got '64'"),
        ("hidden_size", 0, "vision_config.hidden_size must be a positive integer, got 0"),
        ("num_attention_heads", -2, "num_attention_heads must be a positive integer"),
        ("hidden_act", ["gelu"], "hidden_act"),
    ],
)
def test_malformed_hf_config_values_are_named(tmp_path, field, value, match):
    """`hidden_size` as a string was a TypeError, 0 a ZeroDivisionError."""
    d = _hf_dir(tmp_path, **{field: value})
    with pytest.raises(CheckpointError, match=match) as info:
        clipforge.load(d, device="cpu")
    assert str(d / "config.json") in str(info.value)


def test_weight_map_entries_outside_the_directory_are_refused(tmp_path, monkeypatch):
    """A sharded HF `weight_map` entry `../../outside/x.safetensors` was followed outside the directory."""
    d = _hf_dir(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (d / "model.safetensors").rename(outside / "x.safetensors")
    index = {"weight_map": {"logit_scale": "../outside/x.safetensors"}}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    _no_weights_read(monkeypatch)
    with pytest.raises(CheckpointError, match=r"weight_map names '\.\./outside/x\.safetensors'; shards must be files"):
        clipforge.load(d, device="cpu")


def test_non_float_and_non_finite_tensors_are_refused(tmp_path):
    """Bool/int8/NaN tensors were cast into float parameters silently."""
    model = clipforge.create_model("tiny")
    for name, change in (("bool", lambda t: t > 0), ("int8", lambda t: t.to(torch.int8)),
                         ("nan", lambda t: t * float("nan"))):
        sd = _openai_state(model)
        sd["visual.ln_post.weight"] = change(sd["visual.ln_post.weight"])
        torch.save(sd, tmp_path / f"{name}.pt")
        match = "NaN or infinite" if name == "nan" else r"non-float tensors \(1\).*visual.ln_post.weight"
        with pytest.raises(CheckpointError, match=match):
            clipforge.load(tmp_path / f"{name}.pt", device="cpu", activation="quick_gelu")


def test_pickle_refusal_names_the_blocked_global(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo never",))

    torch.save({"w": torch.zeros(1), "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"the global (posix|nt)\.system"):
        read_checkpoint(tmp_path / "evil.pt")


def _bare(tmp_path, model, name: str = "bare.safetensors"):
    path = tmp_path / name
    save_file(_openai_state(model), path)
    return path


def test_bare_vit_h_shapes_get_the_familys_16_heads(tmp_path):
    """ViT-H-14's 1280-wide tower splits into 16 heads of 80, not 1280 // 64 = 20; the shapes say which."""
    cfg = clipforge.get_config("ViT-B-32").replace(
        vision={"width": 1280, "heads": 16, "layers": 1, "patch_size": 14, "image_size": 28},
        text={"layers": 1, "context_length": 8},
    )
    model = clipforge.create_model(cfg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ckpt = read_checkpoint(_bare(tmp_path, model), activation="quick_gelu")
    assert (ckpt.config.vision.heads, ckpt.config.text.heads) == (16, 8)
    assert not [w for w in caught if "guessed" in str(w.message)]
    _same_features(model, clipforge.checkpoints.build_model(ckpt), 28, 8)


def test_bare_weights_of_no_known_family_warn_with_the_guessed_heads(tmp_path):
    with pytest.warns(UserWarning, match=r"guessed as width // 64 \(text tower 1 and vision tower 2\).*vision.heads"):
        read_checkpoint(_bare(tmp_path, clipforge.create_model("tiny")), activation="quick_gelu")


def test_bare_weights_that_do_not_record_their_options_are_refused_for_the_real_reason(tmp_path):
    no_ln_pre = clipforge.create_model(clipforge.get_config("tiny").replace(vision={"ln_pre": False}))
    path = _bare(tmp_path, no_ln_pre)
    with pytest.raises(CheckpointError, match="no visual.ln_pre .OpenCLIP no_ln_pre"):
        read_checkpoint(path, activation="quick_gelu")
    ckpt = read_checkpoint(path, config=no_ln_pre.config)  # the config it needs is accepted
    _same_features(no_ln_pre, clipforge.checkpoints.build_model(ckpt), 32, 16)

    sd = _openai_state(clipforge.create_model("tiny"))
    sd["visual.positional_embedding"] = sd["visual.positional_embedding"][:7]  # 6 patches: a 2 x 3 grid
    save_file(sd, tmp_path / "wide.safetensors")
    with pytest.raises(CheckpointError, match="not a square grid: non-square images"):
        read_checkpoint(tmp_path / "wide.safetensors", activation="quick_gelu")

    big_vocab = clipforge.create_model(clipforge.get_config("tiny").replace(text={"vocab_size": 50000}))
    with pytest.raises(CheckpointError, match="50000 tokens, more than the CLIP BPE's 49408"):
        read_checkpoint(_bare(tmp_path, big_vocab), activation="quick_gelu")


def test_a_hugging_face_tokenizer_is_refused_never_replaced_by_the_clip_bpe(tmp_path):
    export(clipforge.create_model("tiny"), tmp_path / "oc", "openclip")
    path = tmp_path / "oc" / "open_clip_config.json"
    data = json.loads(path.read_text())
    data["model_cfg"]["text_cfg"].update(hf_tokenizer_name="facebook/xlm-v-base", pool_type="eos", eos_id=2)
    path.write_text(json.dumps(data))
    ckpt = read_checkpoint(tmp_path / "oc")  # the weights and architecture load exactly...
    assert ckpt.config.tokenizer["name"] == "facebook/xlm-v-base" and ckpt.config.text.pooling == "eos"
    with pytest.raises(CheckpointError, match="'facebook/xlm-v-base' .OpenCLIP hf_tokenizer_name"):
        clipforge.load(tmp_path / "oc", device="cpu")  # ...but no tokenizer is made up for them
    with pytest.raises(CheckpointError, match="does not substitute the CLIP BPE"):
        clipforge.get_tokenizer(tmp_path / "oc")


def test_text_pooling_options_follow_openclip():
    from dataclasses import replace

    from clipforge.model.clip import eot_positions

    tokens = torch.tensor([[5, 2, 0, 0], [5, 6, 7, 8]])
    text = clipforge.get_config("tiny").text
    assert eot_positions(tokens, replace(text, pooling="eos", eot_token_id=2)).tolist() == [1, 0]  # none: 0
    assert eot_positions(tokens, replace(text, pooling="last")).tolist() == [3, 3]


def test_a_non_causal_text_tower_sees_its_whole_padded_row():
    model = clipforge.create_model(clipforge.get_config("tiny").replace(text={"causal": False}))
    row = [49406, 320, 49407] + [0] * 13
    tokens = torch.tensor([row, row[:3] + [7] * 13])
    with torch.no_grad():
        feats = model.encode_text(tokens)
        alone = model.encode_text(tokens[:1])
    assert (feats[0] - feats[1]).abs().max() > 1e-3  # the padding after the EOT changes the feature
    assert torch.allclose(feats[0], alone[0], atol=1e-6)
    with pytest.raises(ValueError, match="no_causal_mask"):
        clipforge.fast.optimize(model)


def test_layer_scale_weights_are_folded_into_the_linears_they_scale(tmp_path):
    """OpenCLIP's `x + gamma * f(x)` (ls_init_value) equals `f` with gamma folded into its last linear."""
    model = clipforge.create_model("tiny")
    sd = _openai_state(model)
    g = torch.Generator().manual_seed(5)
    for key in [k for k in sd if k.endswith(("attn.out_proj.weight", "mlp.c_proj.weight"))]:
        block, linear = key.rsplit(".", 3)[0], key[: -len(".weight")]
        gamma = torch.rand(sd[key].shape[0], generator=g) + 0.5
        sd[f"{block}.ls_{1 if 'attn' in key else 2}.gamma"] = gamma
        sd[key] = sd[key] / gamma[:, None]
        sd[f"{linear}.bias"] = sd[f"{linear}.bias"] / gamma
    save_file(sd, tmp_path / "ls.safetensors")
    ckpt = read_checkpoint(tmp_path / "ls.safetensors", activation="quick_gelu")
    assert not [k for k in ckpt.state_dict if ".ls_" in k]
    _same_features(model, clipforge.checkpoints.build_model(ckpt), 32, 16, tol=1e-5)
