"""The shared interface: every method fits, saves and reloads to identical logits; the classify/eval surface;
protocols; the `clipforge adapt` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_adapt_common import CLASSNAMES, TEMPLATES, backbone, data, one_thread  # noqa: F401

import clipforge
from clipforge import adapt
from clipforge.adapt import protocols as P

pytest.importorskip("sklearn")
_threads = pytest.fixture(scope="module", autouse=True)(one_thread)

#: a real (small) run of every method
QUICK = {
    "zeroshot": {},
    "linear-probe": {},
    "tip-adapter": {"alpha_steps": 3, "beta_steps": 4},
    "tip-adapter-f": {"epochs": 2, "alpha_steps": 3, "beta_steps": 4},
    "gda": {},
    "clip-adapter": {"epochs": 3},
    "coop": {"n_ctx": 4, "epochs": 3},
    "cocoop": {"epochs": 1},
    "maple": {"epochs": 1},
    "tpt": {"n_views": 4},
    "finetune": {"epochs": 1},
    "lora": {"epochs": 1},
    "wise-ft": {"epochs": 1},
    "soup": {"epochs": 1, "ingredients": [{"seed": 0}, {"seed": 1, "lr": 1e-3}]},
}


def test_every_method_is_registered_and_has_a_quick_run():
    assert sorted(QUICK) == sorted(adapt.list_methods())


@pytest.mark.parametrize("method", list(QUICK))
def test_fit_save_load_round_trip(method, tmp_path):
    train, val = data(views=2, pixels=True), data("val", 2, pixels=True)
    test = data("val", 1, pixels=True)
    a = adapt.create(method, backbone(), CLASSNAMES, TEMPLATES, **QUICK[method]).fit(train, val)
    a.save(tmp_path / method)
    meta = json.loads((tmp_path / method / "adapter.json").read_text())
    assert meta["method"] == method and meta["classnames"] == CLASSNAMES
    b = adapt.load_adapter(tmp_path / method, backbone())
    x = test.features if a.input == "features" else a.encode(test.pixels)
    with torch.no_grad():
        torch.testing.assert_close(b.logits(x), a.logits(x), rtol=0, atol=1e-5)
    logits = P.predict(b, test)
    assert logits.shape == (len(test), len(CLASSNAMES)) and torch.isfinite(logits).all()
    # the classify/eval surface: a real encoder (un-normalised image features) -> the adapter's logits
    if a.input == "pixels":  # test-time methods have no fixed image encoder
        with pytest.raises(ValueError, match="test time"):
            adapt.AdaptedModel.wrap(b)
        return
    adapted = adapt.AdaptedModel.wrap(b)
    enc = adapted.encoder.encode_image(test.pixels)
    assert adapted.encoder.embed_dim == backbone().embed_dim and enc.shape == (len(test), backbone().embed_dim)
    normed = adapted.encoder.encode_image(test.pixels, normalize=True)
    torch.testing.assert_close(normed, torch.nn.functional.normalize(enc, dim=-1))
    torch.testing.assert_close(adapted.logits(enc), b.predict(test.pixels), rtol=0, atol=1e-5)


def test_loading_checks_the_backbone(tmp_path):
    a = adapt.create("tip-adapter", backbone(), CLASSNAMES, TEMPLATES, search=False).fit(data())
    a.save(tmp_path / "tip")
    with pytest.raises(ValueError, match="does not record"):
        adapt.load_adapter(tmp_path / "tip")
    torch.manual_seed(1)
    other = clipforge.create_model("tiny", text={"eot_token_id": 2})
    with pytest.raises(ValueError, match="fingerprint"):
        adapt.load_adapter(tmp_path / "tip", adapt.Backbone(other, backbone().preprocess, backbone().tokenizer))
    with pytest.raises(ValueError, match="fit the adapter"):
        adapt.create("coop", backbone(), CLASSNAMES, n_ctx=2).save(tmp_path / "unfitted")
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        adapt.create("coop", backbone(), CLASSNAMES, nctx=2)
    with pytest.raises(ValueError, match="unknown adaptation method"):
        adapt.get_method("prompt-magic")


def test_protocol_helpers():
    assert P.harmonic_mean(0.8, 0.6) == pytest.approx(2 * 0.8 * 0.6 / 1.4)
    assert P.base_novel_classes(5) == ([0, 1, 2], [3, 4])
    d = data(per_class=4)
    two = P.shots(d, 2, seed=0)
    assert np.bincount(two.labels.numpy()).tolist() == [2, 2, 2, 2]
    assert not torch.equal(P.shots(d, 2, 0).features, P.shots(d, 2, 1).features)
    novel = d.relabel({2: 0, 3: 1})
    assert sorted(set(novel.labels.tolist())) == [0, 1] and len(novel) == 8


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-words")
    clipforge.save(backbone().model, d, backbone().tokenizer)
    return d


def test_cli_adapt_fits_saves_and_the_adapter_classifies_files(model_dir, tmp_path, capsys):
    from clipforge.cli.main import main
    from clipforge.data.embedding import embed_images
    from clipforge.data.images import FileImages

    out = tmp_path / "tip"
    argv = [
        "adapt",
        "--method",
        "tip-adapter",
        "--dataset",
        "shapes:colour?image_size=32",
        "--max-samples",
        "48",
        "--shots",
        "2",
        "--views",
        "2",
        "--set",
        "beta_steps=4",
        "--set",
        "alpha_steps=3",
        "--model",
        str(model_dir),
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--json",
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= result["test_accuracy"] <= 1 and result["saved"] == str(out)
    adapted = adapt.load_adapted(out)  # finds its backbone through the recorded path
    paths = []
    for i, image in enumerate(data("val", 1).images):
        paths.append(tmp_path / f"{i}.png")
        image.save(paths[-1])
    emb = embed_images(adapted.encoder, adapted.preprocess, FileImages(tuple(paths)), batch_size=4, progress=False)
    probs = adapted.probabilities(torch.from_numpy(emb.features))
    assert probs.shape == (4, 8) and torch.allclose(probs.sum(-1), torch.ones(4))
    assert main(["adapt", "--list"]) == 0 and "wise-ft" in capsys.readouterr().out


def test_cli_base_to_novel(model_dir, tmp_path, capsys):
    from clipforge.cli.main import main

    argv = [
        "adapt",
        "--method",
        "coop",
        "--base-to-novel",
        "--dataset",
        "shapes:colour?image_size=32",
        "--max-samples",
        "48",
        "--shots",
        "2",
        "--views",
        "0",
        "--set",
        "n_ctx=2",
        "--set",
        "epochs=2",
        "--model",
        str(model_dir),
        "--no-cache",
        "--json",
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    b2n = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["base_to_novel"]
    assert b2n["hm"] == pytest.approx(P.harmonic_mean(b2n["base"], b2n["novel"]))
    assert main(argv[:2] + ["linear-probe"] + argv[3:]) == 2  # closed-set methods refuse, with a clear error
    assert "cannot classify classes" in capsys.readouterr().err


def test_classify_and_eval_with_an_adapter(model_dir, tmp_path, capsys):
    from clipforge.cli.main import main

    backbone_from_disk = adapt.Backbone.load(model_dir)
    train = data(views=2)
    names = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
    a = adapt.create("tip-adapter", backbone_from_disk, names, TEMPLATES, search=False, alpha=5.0).fit(train)
    a.save(tmp_path / "tip")
    paths = []
    for i, image in enumerate(data("val", 1).images):
        paths.append(str(tmp_path / f"{i}.png"))
        image.save(paths[-1])
    assert main(["classify", *paths, "--adapter", str(tmp_path / "tip"), "--json", "--top-k", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    pixels = backbone().preprocess.batch([data("val", 1).images[i] for i in range(4)])
    expected = [names[i] for i in a.predict(pixels).argmax(-1).tolist()]
    assert [r["predictions"][0]["label"] for r in rows] == expected
    out = tmp_path / "eval"
    argv = ["eval", "--task", "zeroshot", "--dataset", "shapes:colour?image_size=32", "--max-samples", "16"]
    assert main([*argv, "--adapter", str(tmp_path / "tip"), "--out", str(out), "--no-cache", "--quiet"]) == 0
    (result_file,) = out.glob("*zeroshot.json")
    result = json.loads(result_file.read_text())
    assert result["model"]["adapter_method"] == "tip-adapter"
    from clipforge.evaluate import resolve_dataset

    ds = resolve_dataset("shapes:colour?image_size=32")
    test = ds.load(ds.default_split(), ds.default_shift(), 16)
    expected_acc = P.score(a, adapt.FewShotData(test.labels, images=test.images))
    assert result["summary"]["top1"] == pytest.approx(expected_acc)
    # tasks an adapter cannot answer are refused up front
    assert main([*argv[:2], "retrieval", *argv[3:], "--adapter", str(tmp_path / "tip"), "--no-cache"]) == 2
    assert "do not apply" in capsys.readouterr().err
    assert main(["classify", *paths, "--adapter", str(tmp_path / "tip"), "--precision", "int8"]) == 2
    assert "adapters run on the fp32 model" in capsys.readouterr().err
    assert main(["classify", *paths, "--adapter", str(tmp_path / "tip"), "--labels", "a,b"]) == 2
    assert "exclude each other" in capsys.readouterr().err


def test_adapters_of_the_embedded_default_model_find_it_again(tmp_path):
    from clipforge.adapt.base import DEFAULT_SOURCE

    try:
        default = adapt.Backbone.load()
    except FileNotFoundError:
        pytest.skip("no embedded default model in this checkout")
    assert default.source == DEFAULT_SOURCE
    zs = adapt.create("zeroshot", default, ["circle", "square"], ["a photo of a {}."])
    zs.save(tmp_path / "zs")
    again = adapt.load_adapter(tmp_path / "zs")  # no backbone given: the recorded source is the default model
    assert again.backbone.fingerprint == default.fingerprint


def test_a_fixed_head_follows_the_dataset_class_order():
    from clipforge.evaluate.tasks import aligned_head

    class Head:
        classnames = ["red", "green", "blue"]

        def logits(self, x):
            return x @ torch.tensor([[1.0, 2.0, 3.0]])

    head = Head()
    assert aligned_head(head, ["red", "green", "blue"]) is head
    reordered = aligned_head(head, ["blue", "red", "green"])
    assert reordered.logits(torch.ones(2, 1)).tolist() == [[3.0, 1.0, 2.0]] * 2
    with pytest.raises(ValueError, match=r"only in the adapter \['green'\], only in the dataset \['pink'\]"):
        aligned_head(head, ["red", "pink", "blue"])
