"""Every encoder implementation satisfies the encoder protocol for real, checked by the same assertions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import clipforge
from clipforge import adapt
from clipforge.fast import optimize
from clipforge.runtime import Encoder


def _tiny():
    torch.manual_seed(0)
    return clipforge.create_model("tiny")


def _adapted(model):
    preprocess = clipforge.transforms.ImageTransform(model.config.preprocess)
    backbone = adapt.Backbone(model, preprocess, clipforge.api.get_tokenizer("tiny"))
    names = ["red", "blue"]
    labels = torch.tensor([0, 1, 0, 1])
    feats = torch.randn(4, model.config.embed_dim)
    clf = adapt.create("linear-probe", backbone, names, ("a {} thing.",)).fit(adapt.FewShotData(labels, features=feats))
    return adapt.AdaptedModel.wrap(clf).encoder


IMPLEMENTATIONS = {
    "plain fp32": lambda m: m,
    "plain bf16": lambda m: m.to(torch.bfloat16),
    "engine fp32": lambda m: optimize(m, "fp32"),
    "engine bf16": lambda m: optimize(m, "bf16"),
    "engine int8": lambda m: optimize(m, "int8"),
    "onnx fp32": lambda m: optimize(m, "fp32", backend="onnx"),
    "adapted": _adapted,
}


@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
def test_conformance(name):
    model = _tiny()
    reference = _tiny()
    enc = IMPLEMENTATIONS[name](model)
    assert isinstance(enc, Encoder)
    assert enc.embed_dim == reference.config.embed_dim
    assert enc.device.type == "cpu" and isinstance(enc.dtype, torch.dtype)
    assert isinstance(enc.runtime, str) and enc.runtime
    assert enc.name == (reference.config.name if name != "adapted" else "linear-probe-adapted")
    assert isinstance(enc.fingerprint(), str) and len(enc.fingerprint()) >= 16
    size = reference.config.vision.image_size
    pixels = torch.randn(3, 3, size, size).to(enc.dtype)
    tokens = clipforge.api.get_tokenizer("tiny")(["a red circle", "two blue squares", "x"])
    img, txt = enc.encode_image(pixels), enc.encode_text(tokens)
    assert img.shape == (3, enc.embed_dim) and txt.shape == (3, enc.embed_dim)
    tol = {"atol": 1e-2, "rtol": 0} if enc.dtype == torch.bfloat16 else {}  # bf16 normalises in bf16
    unit_img = F.normalize(img.float(), dim=-1)
    torch.testing.assert_close(enc.encode_image(pixels, normalize=True).float(), unit_img, **tol)
    torch.testing.assert_close(enc.encode_text(tokens, normalize=True).float(), F.normalize(txt.float(), dim=-1), **tol)
    logits = enc.logits(F.normalize(img.float(), dim=-1), F.normalize(txt.float(), dim=-1))
    assert logits.shape == (3, 3) and torch.isfinite(logits).all()
    assert enc.logit_scale.numel() == 1 and enc.logit_bias is None
    if name != "adapted":  # text features of every runtime agree with the fp32 model's
        ref = reference.encode_text(tokens, normalize=True)
        cos = (F.normalize(txt.float(), dim=-1) * ref).sum(-1)
        assert cos.min() > 0.98


def test_runtime_names_differ_so_caches_keep_precisions_apart():
    names = {IMPLEMENTATIONS[n](_tiny()).runtime for n in IMPLEMENTATIONS}
    assert len(names) == len(IMPLEMENTATIONS)


def test_engine_policy_agrees_with_load_policy(monkeypatch):
    from clipforge.fast import default_options
    from clipforge.runtime import resolve_runtime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for bf16 in (True, False):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, b=bf16, **k: b)
        assert default_options("cuda")[0] == resolve_runtime("auto", "torch", torch.device("cuda"))[0]
