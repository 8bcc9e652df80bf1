"""End to end: a tiny random model evaluated on small shapes-world and digits data, via CLI and API."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import clipforge
from clipforge.cli.main import main
from clipforge.evaluate import Evaluator, evaluate, resolve_dataset, write_report
from clipforge.zeroshot import ZeroShotClassifier

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

N = 96  # images per split: small enough to be quick, large enough for a clear probe-vs-chance margin


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models on a shared 2-core machine run ~10x faster on one thread (no OpenMP contention)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shapes_run(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    cache = tmp_path_factory.mktemp("cache")
    argv = [
        "eval",
        "--task",
        "all",
        "--dataset",
        "shapes:colour",
        "--model",
        str(model_dir),
        "--max-samples",
        str(N),
        "--shots",
        "1,2",
        "--seeds",
        "0,1",
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "--quiet",
        "--device",
        "cpu",
    ]
    return main(argv), out


def _load(out, task):
    (path,) = out.glob(f"*__{task}.json")
    return json.loads(path.read_text())


def test_all_tasks_write_json_and_plots(shapes_run, capsys):
    rc, out = shapes_run
    assert rc == 0
    tasks = ("zeroshot", "retrieval", "linear-probe", "few-shot", "robustness")
    for task in tasks:
        rec = _load(out, task)
        assert rec["task"] == task and rec["schema"] == "clipforge.eval/1"
        assert rec["model"]["hash"] and "tiny-model" in rec["model"]["path"]
        assert rec["dataset"]["name"] == "shapes:colour" and rec["clipforge_version"] == clipforge.__version__
        assert rec["created"] and rec["wall_time_s"] >= 0 and rec["parameters"]
        for png in rec["plots"]:
            assert (out / png).stat().st_size > 5000
            assert Image.open(out / png).size[0] > 300
    plots = {p.name.split(".", 1)[1] for p in out.glob("*.png")}
    assert plots == {"confusion.png", "reliability.png", "grid.png", "curve.png", "robustness.png"}


def test_zeroshot_metrics_are_consistent(shapes_run):
    z = _load(shapes_run[1], "zeroshot")
    m = z["metrics"]
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (8, 8) and cm.sum() == N == z["dataset"]["n_images"]
    assert m["top1"] == pytest.approx(np.trace(cm) / N)
    assert m["top1"] <= m["top5"] <= 1 and 0 <= m["ece"] <= 1
    assert sum(r["support"] for r in m["per_class"]) == N
    assert z["summary"]["top1"] == m["top1"] and len(z["parameters"]["templates"]) == 4


def test_retrieval_metrics_are_consistent(shapes_run):
    r = _load(shapes_run[1], "retrieval")["metrics"]
    for d in ("image_to_text", "text_to_image"):
        assert r[d]["recall@1"] <= r[d]["recall@5"] <= r[d]["recall@10"]
        assert 1 <= r[d]["median_rank"] <= N and r[d]["n_queries"] == N


def test_linear_probe_on_colour_beats_chance(shapes_run):
    """Random features still carry colour, so a probe clearly beats the majority-class rate."""
    p = _load(shapes_run[1], "linear-probe")
    counts = np.array(p["metrics"]["confusion_matrix"]).sum(axis=1)
    chance = counts.max() / counts.sum()
    assert p["metrics"]["chance"]["majority"] == pytest.approx(chance)
    assert p["metrics"]["accuracy"] > chance + 0.1
    assert p["metrics"]["C"] in [s["C"] for s in p["metrics"]["search"]]
    assert p["metrics"]["n_train"] == 2 * N  # refit on train + val


def test_few_shot_and_robustness_share_the_zero_shot_test_set(shapes_run):
    out = shapes_run[1]
    top1 = _load(out, "zeroshot")["metrics"]["top1"]
    f = _load(out, "few-shot")
    assert [r["shots"] for r in f["metrics"]["curve"]] == [1, 2]
    assert all(r["n_seeds"] == 2 and 0 <= r["mean"] <= 1 for r in f["metrics"]["curve"])
    assert f["metrics"]["zeroshot"]["accuracy"] == pytest.approx(top1)
    assert len(f["metrics"]["runs"]) == 4
    table = _load(out, "robustness")["metrics"]["table"]
    assert [t["variant"] for t in table] == [
        "in-distribution",
        "noise",
        "blur",
        "sketch",
        "background",
        "compositional",
    ]
    assert table[0]["zeroshot_accuracy"] == pytest.approx(top1)
    assert table[3]["zeroshot_gap"] == pytest.approx(table[3]["zeroshot_accuracy"] - top1)


def test_report_merges_results_and_fits_effective_robustness(shapes_run, tmp_path, capsys):
    out = shapes_run[1]
    assert main(["eval", "report", str(out), "--out", str(tmp_path / "report")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "report.csv")))
    assert sorted(r["task"] for r in rows) == sorted(
        ["zeroshot", "retrieval", "linear-probe", "few-shot", "robustness"]
    )
    md = (tmp_path / "report.md").read_text()
    assert "## linear-probe" in md and "| model |" in md
    # Three more "models" with different robustness numbers: effective robustness becomes defined.
    rob = _load(out, "robustness")
    for k, acc in enumerate((0.3, 0.5, 0.7)):
        rec = json.loads(json.dumps(rob))
        rec["model"].update(name=f"m{k}", hash=f"{k}" * 12)
        for row in rec["metrics"]["table"]:
            row["zeroshot_accuracy"] = acc if row["variant"] == "in-distribution" else acc - 0.1 + 0.02 * k
        (tmp_path / f"m{k}.json").write_text(json.dumps(rec))
    csv_path, _ = write_report([tmp_path / f"m{k}.json" for k in range(3)], tmp_path / "er")
    rows = list(csv.DictReader(open(csv_path)))
    assert {"effective_robustness", "noise_effective_robustness"} <= set(rows[0])


def test_second_run_reads_the_cache_and_never_calls_the_model(model_dir, tmp_path):
    model, preprocess, tokenizer = clipforge.load(model_dir, device="cpu")
    calls = {"image": 0, "text": 0}
    enc_i, enc_t = model.encode_image, model.encode_text

    def count_image(*a, **k):
        calls["image"] += 1
        return enc_i(*a, **k)

    def count_text(*a, **k):
        calls["text"] += 1
        return enc_t(*a, **k)

    model.encode_image, model.encode_text = count_image, count_text
    kwargs = dict(out_dir=None, max_samples=24, cache_dir=tmp_path / "cache", progress=False, plots=False)
    first = evaluate(["zeroshot", "retrieval"], "shapes:shape", (model, preprocess, tokenizer), **kwargs)
    assert calls["image"] > 0 and calls["text"] > 0
    calls.update(image=0, text=0)
    second = evaluate(["zeroshot", "retrieval"], "shapes:shape", (model, preprocess, tokenizer), **kwargs)
    assert calls == {"image": 0, "text": 0}
    for a, b in zip(first, second):
        assert a.result.metrics == b.result.metrics
    with torch.no_grad():  # other weights: other cache key
        model.visual.proj.add_(0.01)
    evaluate("zeroshot", "shapes:shape", (model, preprocess, tokenizer), **kwargs)
    assert calls["image"] > 0
    calls.update(image=0)
    evaluate("zeroshot", "shapes:shape", (model, preprocess, tokenizer), **{**kwargs, "max_samples": 25})
    assert calls["image"] > 0  # other data: other cache key


def test_retrieval_with_several_captions_per_image(model_dir, tmp_path):
    (run,) = evaluate("retrieval", "shapes?n=20", str(model_dir), tmp_path, cache_dir=None, progress=False)
    m = run.result.metrics
    assert m["n_images"] == 20 and m["n_captions"] == 40
    assert m["image_to_text"]["n_queries"] == 20 and m["text_to_image"]["n_queries"] == 40
    assert run.result.parameters["captions_per_image"] == 2
    grid = run.result.artifacts["examples"]
    assert all(len(e["top"]) == 5 and 1 <= e["target_rank"] <= 20 for e in grid)


def test_classifier_from_cached_prompts_matches_zeroshot_build(model_dir):
    model, preprocess, tokenizer = clipforge.load(model_dir, device="cpu")
    ev = Evaluator(model, preprocess, tokenizer, progress=False)
    names, templates = ["red circle", "blue square", "star"], ["a photo of a {}.", "the {}."]
    ours = ev.classifier(names, templates)
    ref = ZeroShotClassifier.build(model, tokenizer, names, templates)
    assert torch.allclose(ours.weights, ref.weights, atol=1e-5) and ours.logit_scale == pytest.approx(ref.logit_scale)


def test_unreadable_images_are_skipped_and_reported(model_dir, tmp_path):
    root = tmp_path / "data"
    for k, cls in enumerate(("red_square", "green_square")):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 40), ((200, 20, 20), (20, 200, 20))[k]).save(root / cls / f"{i}.png")
    (root / "red_square" / "broken.png").write_bytes(b"not a png")
    (res,) = evaluate(
        "zeroshot", str(root), str(model_dir), tmp_path / "out", cache_dir=None, progress=False, templates="simple"
    )
    assert res.result.dataset["n_images"] == 6
    assert any("skipped 1 item" in n for n in res.result.notes)
    assert res.result.artifacts["classnames"] == ["green square", "red square"]


def test_cli_errors_and_skips(model_dir, tmp_path, capsys):
    base = ["eval", "--model", str(model_dir), "--out", str(tmp_path), "--no-cache", "--quiet", "--no-plots"]
    assert main([*base, "--task", "retrieval", "--dataset", "digits"]) == 2
    assert "no captions" in capsys.readouterr().err
    assert main([*base, "--dataset", "nothing-here"]) == 2
    assert "not a registered dataset" in capsys.readouterr().err
    assert main([*base, "--task", "sideways", "--dataset", "digits"]) == 2
    assert main(["eval", "--task", "zeroshot"]) == 2
    assert "--dataset is required" in capsys.readouterr().err
    rc = main([*base, "--task", "all", "--dataset", "digits", "--max-samples", "40", "--shots", "1", "--seeds", "0"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "retrieval" in printed and "skipped: the dataset has no captions" in printed
    assert "skipped: the dataset has no distribution-shift variants" in printed
    z = json.loads(next(tmp_path.glob("*digits-test__zeroshot.json")).read_text())
    assert z["metrics"]["n_classes"] == 10 and z["dataset"]["n_images"] == 40


def test_registry_dataset_through_the_cli(model_dir, tmp_path):
    src = resolve_dataset("shapes:colour?n=12")
    root = tmp_path / "colours"
    ds = src.load("test")
    for i in range(len(ds)):
        d = root / ds.classnames[int(ds.labels[i])]
        d.mkdir(parents=True, exist_ok=True)
        ds.images.load(i).save(d / f"{i}.png")
    reg = tmp_path / "colours.json"
    reg.write_text(
        json.dumps({"name": "my-colours", "type": "folder", "path": "colours", "templates": ["a {} shape."]})
    )
    assert (
        main(
            [
                "eval",
                "--dataset",
                str(reg),
                "--model",
                str(model_dir),
                "--out",
                str(tmp_path / "o"),
                "--no-cache",
                "--quiet",
            ]
        )
        == 0
    )
    rec = json.loads(next((tmp_path / "o").glob("*__zeroshot.json")).read_text())
    assert rec["dataset"]["name"] == "my-colours" and rec["parameters"]["templates"] == ["a {} shape."]
    shutil.rmtree(root)
