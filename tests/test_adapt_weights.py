"""Weight-space methods: full fine-tuning, LoRA (exact identity at init, exact merge), WiSE-FT, model soups."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from test_adapt_common import CLASSNAMES, TEMPLATES, backbone, data, one_thread  # noqa: F401
from torch.nn.utils import parametrize

import clipforge
from clipforge import adapt
from clipforge.adapt.lora import add_lora, merge_lora
from clipforge.adapt.soup import average_states
from clipforge.adapt.wise_ft import WiSEFT

_threads = pytest.fixture(scope="module", autouse=True)(one_thread)


def make(method: str, **hp):
    return adapt.create(method, backbone(), CLASSNAMES, TEMPLATES, **hp)


@pytest.fixture(scope="module")
def finetuned():
    return make("finetune", epochs=8, lr=1e-3, batch_size=8).fit(data(pixels=True))


def _loss(a, d) -> float:
    with torch.no_grad():
        return float(F.cross_entropy(a.logits(a.encode(d.pixels)), d.labels))


def test_untrained_finetune_model_is_zero_shot_and_training_moves_it(finetuned):
    train = data(pixels=True)
    fresh = make("finetune")
    zs = make("zeroshot")
    torch.testing.assert_close(fresh.logits(fresh.encode(train.pixels)), zs.logits(train.features), atol=1e-4, rtol=0)
    assert _loss(finetuned, train) < _loss(fresh, train)
    moved = [k for k, v in finetuned.visual.state_dict().items() if not torch.equal(v, fresh.visual.state_dict()[k])]
    assert moved  # the image encoder itself was fine-tuned
    assert not any(p.requires_grad for p in backbone().model.parameters())  # the backbone is untouched


def test_wise_ft_endpoints_are_exact_and_the_middle_is_the_average(finetuned):
    pixels = data(pixels=True).pixels
    zs = make("zeroshot")
    w0 = WiSEFT.from_finetuned(finetuned, alpha=0.0)
    torch.testing.assert_close(
        w0.logits(w0.encode(pixels)), zs.logits(backbone().encode_pixels(pixels)), atol=1e-4, rtol=0
    )
    w1 = WiSEFT.from_finetuned(finetuned, alpha=1.0)
    assert torch.equal(w1.logits(w1.encode(pixels)), finetuned.logits(finetuned.encode(pixels)))
    w5 = w1.set_alpha(0.5)
    theta0, theta1 = finetuned.zeroshot_state(), finetuned.state_dict()
    for k, v in w5.merged.state_dict().items():
        torch.testing.assert_close(v, (theta0[k] + theta1[k]) / 2)
    sweep = w5.sweep([0.0, 1.0], lambda m: m.alpha)
    assert sweep == [(0.0, 0.0), (1.0, 1.0)] and w5.alpha == 0.5


def test_wise_ft_adapter_fits_end_to_end():
    wise = make("wise-ft", epochs=1, alpha=0.3).fit(data(pixels=True))
    assert wise.alpha == 0.3 and wise.fitted


def test_lora_starts_as_the_base_model_and_merges_exactly():
    train = data(pixels=True)
    bb = backbone()
    lora = make("lora", rank=2, targets="q,k,v,out,fc,proj", towers="vision,text")
    tokens = bb.tokenizer(["a photo of the red shape."])
    exact = dict(rtol=0, atol=1e-6)
    with torch.no_grad():
        # B = 0 at initialisation: every adapted weight is bit-identical to the base weight ...
        base = dict(bb.model.named_parameters())
        for name, module in lora.model.named_modules():
            if parametrize.is_parametrized(module):
                for t in module.parametrizations:
                    assert torch.equal(getattr(module, t), base[f"{name}.{t}"])
        # ... so the outputs are the base model's (up to kernel rounding, which does not occur here)
        torch.testing.assert_close(lora.model.encode_image(train.pixels), bb.model.encode_image(train.pixels), **exact)
        torch.testing.assert_close(lora.model.encode_text(tokens), bb.model.encode_text(tokens), **exact)
    trained = make("lora", rank=2, targets="q,v", towers="vision,text", epochs=6, lr=1e-2, batch_size=8).fit(train)
    assert any(p.abs().max() > 0 for n, p in trained.named_parameters() if "lora_B" in n)
    merged = trained.merged()
    assert not any(parametrize.is_parametrized(m) for m in merged.modules())
    block = trained.model.visual.transformer.resblocks[0].attn
    assert torch.equal(merged.visual.transformer.resblocks[0].attn.in_proj_weight, block.in_proj_weight)
    with torch.no_grad():  # same weights bit for bit; outputs equal up to kernel rounding
        torch.testing.assert_close(merged.encode_image(train.pixels), trained.model.encode_image(train.pixels), **exact)
        torch.testing.assert_close(merged.encode_text(tokens), trained.model.encode_text(tokens), **exact)
        assert not torch.allclose(merged.encode_image(train.pixels), bb.model.encode_image(train.pixels))
    assert _loss(trained, train) < _loss(lora, train)
    # only the low-rank factors are saved: 2 layers x 2 towers x (A, B) x {q, v}
    assert len(trained._saved_state()) == 16


def test_lora_on_a_resnet_image_tower_targets_the_attention_pool():
    torch.manual_seed(0)
    base = clipforge.create_model("tiny-rn")
    model = copy.deepcopy(base)
    assert add_lora(model, ("vision",), ("q", "k", "v", "out", "fc"), 2, 1.0) == 4
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(x), base.encode_image(x), rtol=0, atol=1e-6)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
        merged = merge_lora(model, base)
        torch.testing.assert_close(merged.encode_image(x), model.encode_image(x), rtol=0, atol=1e-6)
        assert not torch.allclose(merged.encode_image(x), base.encode_image(x))


def test_lora_on_k_only_leaves_the_q_and_v_slices_alone():
    lora = make("lora", targets="k", towers="vision")
    delta = lora.model.visual.transformer.resblocks[0].attn.parametrizations.in_proj_weight[0]
    with torch.no_grad():
        delta.lora_B["k"].normal_()
    d = delta.delta()
    w = d.shape[1]
    assert d[:w].abs().max() == 0 and d[2 * w :].abs().max() == 0 and d[w : 2 * w].abs().max() > 0


def test_uniform_soup_is_the_mean_and_greedy_keeps_only_helpful_ingredients(finetuned):
    from clipforge.adapt.soup import accuracy

    held_out = data(pixels=True)  # the logic under test: judge ingredients on the given held-out data
    bad = make("finetune")
    with torch.no_grad():  # a ruined ingredient: the fine-tuned model with its head negated
        bad.visual.load_state_dict(finetuned.visual.state_dict())
        bad.head.weight.copy_(-finetuned.head.weight)
    assert accuracy(bad, held_out) < accuracy(finetuned, held_out)
    uniform = make("soup", mode="uniform").cook([finetuned, finetuned])
    assert all(torch.equal(v, finetuned.state_dict()[k]) for k, v in uniform.soup.state_dict().items())
    mean = average_states([finetuned.state_dict(), bad.state_dict()])
    torch.testing.assert_close(mean["head.weight"], torch.zeros_like(bad.head.weight))
    greedy = make("soup", mode="greedy").cook([bad, finetuned, finetuned], held_out)
    assert 0 not in greedy.chosen and greedy.chosen[0] in (1, 2)
    assert accuracy(greedy, held_out) >= max(accuracy(m, held_out) for m in (bad, finetuned))
    with pytest.raises(ValueError, match="held-out"):
        make("soup", mode="greedy").cook([finetuned])


def test_soup_fits_its_own_ingredients():
    ings = [{"lr": 1e-3, "seed": 0}, {"lr": 1e-3, "seed": 1}]
    soup = make("soup", mode="greedy", epochs=1, ingredients=ings).fit(data(pixels=True), data("val", 2, pixels=True))
    assert soup.chosen and len(soup.held_out) == 3
