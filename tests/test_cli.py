"""The command line: classify, embed, convert, info — on real photos, with corrupt files mixed in."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image

import clipforge
from clipforge.cli.main import main
from clipforge.zeroshot import ZeroShotClassifier

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("images")
    for name in ("astronaut", "coffee", "chelsea", "camera"):
        Image.fromarray(np.asarray(getattr(skimage_data, name)())).save(d / f"{name}.png")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (d / "empty.png").write_bytes(b"")
    return d


def test_classify_json_matches_python_api(model_dir, images, capsys):
    assert (
        main(
            [
                "classify",
                str(images),
                "--labels",
                "cat,person,mug",
                "--model",
                str(model_dir),
                "--templates",
                "simple",
                "--json",
                "--top-k",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    preds = {r["image"]: r["predictions"] for r in rows if "predictions" in r}
    skipped = {r["image"] for r in rows if "skipped" in r}
    assert len(preds) == 4 and {p.split("/")[-1] for p in skipped} == {"broken.jpg", "empty.png"}
    assert "skipped 2 items" in err
    # The same numbers from the Python API.
    model, preprocess, tokenizer = clipforge.load(model_dir, device="cpu")
    clf = ZeroShotClassifier.build(model, tokenizer, ["cat", "person", "mug"], "simple")
    path = str(images / "chelsea.png")
    with torch.no_grad():
        feats = model.encode_image(preprocess(Image.open(path)).unsqueeze(0))
    probs = clf.probabilities(feats)[0]
    top = probs.argmax().item()
    assert preds[path][0]["label"] == ["cat", "person", "mug"][top]
    assert abs(preds[path][0]["probability"] - probs[top].item()) < 1e-5
    assert len(preds[path]) == 2 and preds[path][0]["probability"] >= preds[path][1]["probability"]


def test_embed_folder_and_texts(model_dir, images, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("a cat\na cup of coffee\n")
    assert (
        main(
            [
                "embed",
                str(images),
                "--out",
                str(tmp_path / "out"),
                "--model",
                str(model_dir),
                "--texts",
                str(texts),
                "--batch-size",
                "3",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    emb = np.load(tmp_path / "out" / "image_embeddings.npy")
    assert emb.shape == (4, 32) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    listed = (tmp_path / "out" / "images.csv").read_text().splitlines()
    assert listed[0] == "id,path" and len(listed) == 5
    assert "broken.jpg" in (tmp_path / "out" / "skipped.csv").read_text()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["images"] == 4 and summary["skipped"] == 2 and summary["texts"] == 2
    # Row i of the matrix is the embedding of the i-th listed image.
    model, preprocess, tokenizer = clipforge.load(model_dir, device="cpu")
    first = listed[1].split(",", 1)[1]
    with torch.no_grad():
        ref = model.encode_image(preprocess(Image.open(first)).unsqueeze(0), normalize=True)[0].numpy()
    assert np.abs(emb[0] - ref).max() < 1e-5
    text_emb = np.load(tmp_path / "out" / "text_embeddings.npy")
    with torch.no_grad():
        ref_t = model.encode_text(tokenizer(["a cat"]), normalize=True)[0].numpy()
    assert np.abs(text_emb[0] - ref_t).max() < 1e-5


def test_embed_csv_manifest_with_missing_file(model_dir, images, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"filepath,caption\n{images / 'coffee.png'},coffee\nnot/there.png,ghost\n")
    assert (
        main(
            [
                "embed",
                str(manifest),
                "--out",
                str(tmp_path / "o"),
                "--model",
                str(model_dir),
                "--texts",
                str(manifest),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert np.load(tmp_path / "o" / "image_embeddings.npy").shape == (1, 32)
    assert np.load(tmp_path / "o" / "text_embeddings.npy").shape == (2, 32)


def test_bad_input_is_one_clear_line(model_dir, tmp_path, capsys):
    assert main(["classify", str(tmp_path / "nothing-here"), "--labels", "a,b", "--model", str(model_dir)]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert main(["classify", str(tmp_path), "--labels", " , ", "--model", str(model_dir)]) == 2
    assert main(["embed", "--out", str(tmp_path / "x"), "--model", str(model_dir)]) == 2
    assert "nothing to embed" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "missing.pt")]) == 2


def test_convert_to_hf_and_back(model_dir, tmp_path, capsys):
    assert main(["convert", str(model_dir), str(tmp_path / "hf"), "--to", "hf"]) == 0
    assert main(["info", str(tmp_path / "hf")]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["format"] == "hf"
    a, _, _ = clipforge.load(model_dir, device="cpu")
    b, _, _ = clipforge.load(tmp_path / "hf", device="cpu")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (a.encode_image(x) - b.encode_image(x)).abs().max() < 1e-6


def test_demo_classifies_retrieves_and_writes_report(model_dir, tmp_path, capsys):
    assert main(["demo", "--model", str(model_dir), "--out", str(tmp_path / "demo"), "-n", "6", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "zero-shot classification of 6" in out and "text -> image retrieval" in out
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert len(results["classification"]) == 6 and results["retrieval"]
    for row in results["classification"]:
        assert row["shape"]["true"] in row["caption"] or row["shape"]["true"] in ("square", "diamond", "cross")
    assert (tmp_path / "demo" / "report.png").stat().st_size > 5_000


def test_every_flag_of_every_command_has_help():
    import argparse

    from clipforge.cli.main import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    bare = [
        f"{name} {action.option_strings[-1]}"
        for name, sub in commands.items()
        for action in sub._actions
        if action.option_strings and not action.help
    ]
    assert bare == []
    train = commands["train"].format_help()
    assert "(default: 5e-04)" in train or "(default: 0.0005)" in train  # TrainConfig defaults are shown
    assert "{fp32,bf16,fp16}" in train and "{clip,siglip,cloob,distill}" in train


def test_exit_codes_agree_when_every_image_fails(model_dir, tmp_path, capsys):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"not an image")
    (folder / "b.jpg").write_bytes(b"")
    model = ["--model", str(model_dir)]
    assert main(["embed", str(folder), "--out", str(tmp_path / "emb"), *model]) == 1
    assert json.loads((tmp_path / "emb" / "summary.json").read_text())["skipped"] == 2
    assert main(["classify", str(folder), "--labels", "red,blue", *model]) == 1
    assert main(["classify", str(tmp_path / "missing"), "--labels", "red,blue", *model]) == 2  # bad input


def test_eval_usage_shows_report_as_optional():
    run = run_cli(["eval", "--help"])
    usage = run.stdout.split("\n\n")[0]
    assert run.returncode == 0 and usage.rstrip().endswith("[report] ...") and " report ..." not in usage
