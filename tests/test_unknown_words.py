"""Words a closed-vocabulary model does not know: reported, never silently turned into uniform scores.

The embedded default model's `WordTokenizer` knows only the shapes world's words, so "cat,dog,car"
are three identical `<unk>` labels: the classifier used to return 33.3 / 33.3 / 33.3 without a word.
"""

from __future__ import annotations

import warnings

import pytest

import clipforge
from clipforge.cli.main import main
from clipforge.data.shapes import ShapesWorld, write_csv_dataset
from clipforge.tokenizer import BPETokenizer, Tokenizer, WordTokenizer
from clipforge.zeroshot import UnknownWordsWarning, ZeroShotClassifier, check_labels, check_queries


@pytest.fixture(scope="module")
def default_model():
    return clipforge.load(device="cpu", backend="none")


@pytest.fixture(scope="module")
def shapes_csv(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes-words")
    return write_csv_dataset(ShapesWorld(seed=3, image_size=64), root / "data", n=6)


def test_word_tokenizer_reports_unknown_words_in_order_once():
    tok = WordTokenizer(["a", "red", "circle", "of"])
    assert tok.unknown_words(["a red CAT", "a dog of a cat", "circle"]) == ["cat", "dog"]
    assert tok.unknown_words("a red circle") == []
    assert isinstance(tok, Tokenizer)


def test_bpe_tokenizer_knows_every_text():
    tok = clipforge.get_tokenizer("tiny")
    assert isinstance(tok, BPETokenizer)
    assert tok.unknown_words(["a photo of a xylophonequux", "猫"]) == []


def test_unknown_label_words_warn_naming_words_labels_and_the_vocabulary_command(default_model):
    model, _, tokenizer = default_model
    with pytest.warns(UnknownWordsWarning) as record:
        clf = ZeroShotClassifier.build(model, tokenizer, "circle,square,red dog", "simple")
    assert len(record) == 1
    message = str(record[0].message)
    assert "'dog'" in message and "'red dog'" in message and "'circle'" not in message
    assert "unknown token" in message and "clipforge info --model" in message
    assert clf.warnings == [message]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # known words: no warning at all
        assert ZeroShotClassifier.build(model, tokenizer, "circle,square", "simple").warnings == []


def test_labels_that_tokenize_identically_are_refused(default_model):
    model, _, tokenizer = default_model
    with pytest.raises(ValueError, match="identical token sequences") as info:
        ZeroShotClassifier.build(model, tokenizer, "cat,dog,car")
    message = str(info.value)
    assert all(f"'{w}'" in message for w in ("cat", "dog", "car")) and "not in the model's vocabulary" in message
    # Labels that differ only in case also collide (the tokenizer lower-cases), even with BPE.
    with pytest.raises(ValueError, match="'Circle', 'circle'"):
        check_labels(clipforge.get_tokenizer("tiny"), ["Circle", "circle"])


def test_queries_with_unknown_words_are_reported(default_model):
    _, _, tokenizer = default_model
    [message] = check_queries(tokenizer, ["a red car"])
    assert "'car'" in message and "'a red car'" in message and "unknown token" in message
    assert check_queries(tokenizer, ["a red circle"]) == []


def test_cli_classify_prints_the_warning_and_refuses_indistinguishable_labels(shapes_csv, capsys):
    argv = ["classify", str(shapes_csv.parent / "images"), "--templates", "simple", "--device", "cpu"]
    assert main([*argv, "--labels", "circle,square,dog"]) == 0
    out, err = capsys.readouterr()
    assert "clipforge classify: warning:" in err and "'dog'" in err and "clipforge info" in err
    assert out.strip()
    assert main([*argv, "--labels", "cat,dog,car"]) == 2
    out, err = capsys.readouterr()
    assert "identical token sequences" in err and "'cat'" in err and not out.strip()


def test_info_default_lists_the_vocabulary(capsys):
    assert main(["info", "default"]) == 0
    out, _ = capsys.readouterr()
    assert '"circle"' in out and '"kind": "words"' in out
    assert main(["info", "--model", str(clipforge.api.default_model_path())]) == 0
    assert '"circle"' in capsys.readouterr().out


@pytest.fixture(scope="module")
def words_index(shapes_csv, tmp_path_factory):
    """An index of a few shapes-world images built with the default model."""
    pytest.importorskip("faiss")
    from clipforge.index import BuildOptions, build_index

    idx = tmp_path_factory.mktemp("words-index") / "idx"
    build_index([str(shapes_csv)], idx, options=BuildOptions(progress=False))
    return idx


def test_cli_search_prints_the_warning_for_unknown_query_words(words_index, capsys):
    assert main(["search", str(words_index), "a red car", "-k", "2"]) == 0
    out, err = capsys.readouterr()
    assert "clipforge search: warning:" in err and "'car'" in err and len(out.splitlines()) == 2
    assert main(["search", str(words_index), "a red circle", "-k", "2"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_service_returns_warnings_and_a_422_for_indistinguishable_labels(words_index):
    pytest.importorskip("fastapi")
    pytest.importorskip("multipart")
    from fastapi.testclient import TestClient

    from clipforge.index import SearchIndex
    from clipforge.serve import create_app

    index = SearchIndex.open(words_index)
    with TestClient(create_app(index), base_url="http://127.0.0.1:8000") as client:
        image = {"image": ("q.png", index.image_bytes(0), "image/png")}
        ok = client.post("/classify", files=image, data={"labels": "circle,square,dog"})
        assert ok.status_code == 200 and len(ok.json()["warnings"]) == 1 and "'dog'" in ok.json()["warnings"][0]
        clean = client.post("/classify", files=image, data={"labels": "circle,square"}).json()
        assert clean["warnings"] == []
        refused = client.post("/classify", files=image, data={"labels": "cat,dog,car"})
        assert refused.status_code == 422 and "identical token sequences" in refused.json()["detail"]
        found = client.get("/search", params={"text": "a red car"}).json()
        assert found["results"] and "'car'" in found["warnings"][0]
        assert client.get("/search", params={"text": "a red circle"}).json()["warnings"] == []
    with pytest.warns(UnknownWordsWarning, match="'car'"):
        index.search_text("a red car", k=2)


def test_shapes_validation_of_a_vocabulary_without_the_class_names_is_nan_not_a_crash():
    from clipforge.api import preprocess_config
    from clipforge.train.validate import zero_shot_accuracy
    from clipforge.transforms import ImageTransform

    model = clipforge.create_model("tiny")
    tok = WordTokenizer(["a", "photo", "of"], context_length=model.config.text.context_length)
    size, preprocess = model.config.vision.image_size, ImageTransform(preprocess_config(model.config))
    with pytest.warns(UnknownWordsWarning, match="validation skipped"):
        value = zero_shot_accuracy(model, preprocess, tok, "shape", "val", 8, 0, size)
    assert value != value  # NaN
