"""Prompt learners: exact prompt plumbing, CoOp, CoCoOp, MaPLe and TPT actually learn (and TPT resets)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_adapt_common import CLASSNAMES, TEMPLATES, backbone, data, one_thread  # noqa: F401

from clipforge import adapt
from clipforge.adapt.prompts import PromptTokens, encode_image_prompted, encode_prompts, init_context

_threads = pytest.fixture(scope="module", autouse=True)(one_thread)


def make(method: str, **hp):
    return adapt.create(method, backbone(), CLASSNAMES, TEMPLATES, **hp)


@pytest.mark.parametrize(
    ("position", "sentence"),
    [("end", "a photo of the {}."), ("front", "{} a photo of the."), ("middle", "a photo {} of the.")],
)
def test_prompts_with_word_embeddings_reproduce_encode_text(position, sentence):
    bb = backbone()
    text, tok = bb.model.text, bb.tokenizer
    n_ctx = len(tok.encode("a photo of the"))
    prompts = PromptTokens(tok, CLASSNAMES, n_ctx, position)
    ctx = init_context(text, tok, n_ctx, "a photo of the")
    with torch.no_grad():
        ours = encode_prompts(text, prompts.tokens, prompts.slots, ctx)
        ref = bb.model.encode_text(tok([sentence.format(c) for c in CLASSNAMES]))
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)


def test_vision_forward_without_prompts_is_the_image_encoder():
    pixels = data(pixels=True).pixels[:3]
    with torch.no_grad():
        torch.testing.assert_close(
            encode_image_prompted(backbone().model.visual, pixels, []), backbone().model.encode_image(pixels)
        )


def test_prompt_longer_than_the_context_is_refused():
    with pytest.raises(ValueError, match="context"):
        make("coop", n_ctx=15)


def test_coop_learns_a_context_that_changes_the_text_features():
    train = data(views=2)
    coop = make("coop", n_ctx=4, epochs=30, lr=0.05, batch_size=8)
    before_ctx, before_text = coop.ctx.detach().clone(), coop.class_features().clone()
    with torch.no_grad():
        before_loss = F.cross_entropy(coop.logits(train.features), train.labels)
    coop.fit(train)
    assert (coop.ctx - before_ctx).abs().max() > 1e-3
    assert (coop.class_features() - before_text).abs().max() > 1e-3
    with torch.no_grad():
        assert F.cross_entropy(coop.logits(train.features), train.labels) < before_loss
    assert not any(p.requires_grad for p in backbone().model.parameters())  # CLIP stays frozen
    novel = coop.for_classes(["purple", "orange"])  # unified context transfers to new names
    assert novel.class_features().shape[0] == 2
    torch.testing.assert_close(novel.ctx, coop.ctx)


def test_coop_class_specific_context_and_epoch_rule():
    coop = make("coop", n_ctx=2, csc=True, position="middle")
    assert coop.ctx.shape[:2] == (4, 2)
    assert not coop.open_vocabulary
    with pytest.raises(ValueError, match="closed set"):
        coop.for_classes(["purple"])
    from clipforge.adapt.coop import coop_epochs

    assert [coop_epochs(k) for k in (1, 2, 4, 8, 16)] == [50, 100, 100, 200, 200]


def test_base_to_novel_refuses_class_specific_coop_before_training(monkeypatch):
    # CoOp's open_vocabulary depends on `csc`; the class-level check alone let csc=True train to the end
    from clipforge.adapt import protocols as P
    from clipforge.adapt.coop import CoOp

    def no_training(self, *args, **kwargs):
        raise AssertionError("fitted before the open-vocabulary check")

    monkeypatch.setattr(CoOp, "fit", no_training)
    splits = P.Splits(list(CLASSNAMES), list(TEMPLATES), data(), data("val"), data("test"))
    with pytest.raises(ValueError, match="cannot classify classes"):
        P.base_to_novel_run("coop", backbone(), splits, 1, 0, {"n_ctx": 2, "csc": True}, views=0)


def test_crop_scale_from_json_is_a_pair_and_other_lengths_are_refused():
    assert make("tpt", crop_scale=[0.3, 1.0]).config.crop_scale == (0.3, 1.0)
    with pytest.raises(ValueError, match="two numbers"):
        make("tpt", crop_scale=[0.3, 0.6, 1.0])


def test_cocoop_conditions_the_prompts_on_each_image():
    train = data(views=2)
    cocoop = make("cocoop", epochs=2, lr=0.01)
    with torch.no_grad():  # a non-zero meta-net output makes the class features image-dependent
        cocoop.meta_net[-1].weight.normal_(0, 0.5)
    f = F.normalize(train.features[:2], dim=-1)
    ctx_shift = cocoop.meta_net(f)
    assert (ctx_shift[0] - ctx_shift[1]).abs().max() > 0
    before = {k: v.detach().clone() for k, v in cocoop.state_dict().items()}
    cocoop.fit(train)
    assert all((cocoop.state_dict()[k] - v).abs().max() > 0 for k, v in before.items())  # ctx and meta-net moved
    one = cocoop.logits(train.features[:1])
    torch.testing.assert_close(cocoop.logits(train.features[:5])[:1], one)  # per-image, batch-independent


def test_maple_couples_vision_prompts_to_text_prompts_and_learns_both():
    train = data(pixels=True)
    maple = make("maple", epochs=3, lr=0.05, batch_size=4, depth=9)
    assert maple.depth == 2  # clamped to the tiny towers' 2 layers
    # the vision prompts are functions of the text prompts: a gradient from the image side reaches ctx
    feats = maple.encode_images(train.pixels[:2])
    feats.sum().backward()
    assert maple.ctx.grad is not None and maple.ctx.grad.abs().max() > 0
    maple.zero_grad()
    with torch.no_grad():
        base_img = backbone().model.encode_image(train.pixels)
        before_txt = maple.class_features().clone()
    maple.fit(train)
    img = maple.encode(train.pixels)
    assert (img - base_img).abs().max() > 1e-4  # prompted image features differ from frozen CLIP
    assert (maple.class_features() - before_txt).abs().max() > 1e-4


def test_tpt_resets_the_prompt_between_samples_and_tunes_it_within_one():
    test = data("val", 1, pixels=True)
    tpt = make("tpt", n_views=8, steps=2, lr=0.05)
    ctx0 = tpt.ctx.detach().clone()
    a, b = test.pixels[:1], test.pixels[1:2]
    both = tpt.logits(torch.cat([a, b]))
    torch.testing.assert_close(both[1:], tpt.logits(b))  # B's result is the same with or without A first
    torch.testing.assert_close(both[:1], tpt.logits(a))
    torch.testing.assert_close(tpt.ctx, ctx0)  # the stored prompt never changes
    logits, tuned = tpt.adapt_one(a[0])
    assert (tuned - ctx0).abs().max() > 1e-4  # the episode did update the prompt
    with torch.no_grad():
        zs_like = tpt.scale * F.normalize(backbone().model.encode_image(a), dim=-1) @ tpt.class_features().t()
    assert not torch.allclose(logits, zs_like)
    flat = tpt.logits(a.reshape(1, -1))  # the flattened pixels the classify surface passes in
    torch.testing.assert_close(flat, both[:1])


def test_tpt_entropy_objective_decreases_on_the_confident_views():
    from clipforge.adapt.tpt import augmented_views, average_entropy

    test = data("val", 1, pixels=True)
    tpt = make("tpt", n_views=16, steps=5, lr=0.05)
    views = augmented_views(test.pixels[0], 16, (0.08, 1.0), torch.Generator().manual_seed(0))
    assert views.shape == (16, *test.pixels.shape[1:]) and torch.equal(views[0], test.pixels[0])
    feats = tpt._view_features(views)

    def objective(ctx):
        with torch.no_grad():
            logits = tpt.scale * feats @ F.normalize(tpt._encode_classes(ctx), dim=-1).t()
            ent = -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)
            return float(average_entropy(logits[ent.argsort()[:1]]))

    gen_seed_ctx = tpt.adapt_one(test.pixels[0])[1]
    assert objective(gen_seed_ctx) < objective(tpt.ctx.detach())
