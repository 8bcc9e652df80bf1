"""`clipforge demo` writes to a documented default folder (never the working directory unasked) or
--out-dir, shows the true class of each wrong label, and stays readable with many images; `index build`
names the files it skipped."""

from __future__ import annotations

import numpy as np
from conftest import run_cli
from PIL import Image, ImageDraw

from clipforge.cli import demo


def test_demo_writes_to_the_cache_folder_not_the_working_directory(model_dir, tmp_path):
    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    run = run_cli(["demo", "-n", "3", "--model", str(model_dir)], cwd=work, env={"CLIPFORGE_CACHE": str(cache)})
    assert run.returncode == 0, run.stderr[-2000:]
    assert list(work.iterdir()) == []
    assert (cache / "demo" / "report.png").is_file() and (cache / "demo" / "results.json").is_file()
    assert str(cache / "demo" / "report.png") in run.stdout


def test_many_images_make_a_capped_grid_and_a_capped_table(model_dir, tmp_path):
    out = tmp_path / "demo"
    run = run_cli(["demo", "-n", "300", "--model", str(model_dir), "--out-dir", str(out)])
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"... and {300 - demo.SHOWN} more (all in results.json)" in run.stdout
    assert len([line for line in run.stdout.splitlines() if line.startswith("  0") or line.startswith("  1")]) <= 60
    with Image.open(out / "report.png") as report:
        width, height = report.size
    rows = demo.SHOWN // demo.COLUMNS
    assert width <= 128 * demo.COLUMNS and height <= 60 + (rows + 4) * (128 + 34)  # 4 default queries
    assert len(list((out / "images").glob("*.png"))) == 300


def test_a_wrong_label_shows_the_true_class(tmp_path, monkeypatch):
    texts: list[str] = []
    original = ImageDraw.ImageDraw.text

    def record(self, xy, text, *args, **kwargs):
        texts.append(text)
        return original(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", record)
    sample = type("S", (), {"image": Image.new("RGB", (32, 32))})()
    right = {"shape": {"predicted": "circle", "true": "circle"}, "colour": {"predicted": "red", "true": "red"}}
    wrong = {"shape": {"predicted": "square", "true": "star"}, "colour": {"predicted": "blue", "true": "green"}}
    demo._plot([sample, sample], [right, wrong], [], ["a.png", "b.png"], tmp_path / "report.png")
    assert "red circle" in texts and "blue square" in texts
    assert "true: green star" in texts and "true: red circle" not in texts


def test_index_build_names_skipped_files_then_counts_the_rest(model_dir, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.fromarray(np.full((32, 32, 3), 90 * i, np.uint8)).save(images / f"{i}.png")
    for i in range(7):
        (images / f"bad{i}.jpg").write_bytes(b"not an image")
    run = run_cli(["index", "build", str(images), "--out", str(tmp_path / "idx"), "--model", str(model_dir), "--quiet"])
    assert run.returncode == 0, run.stderr[-2000:]
    named = [line for line in run.stdout.splitlines() if line.strip().startswith("skipped ")]
    assert len(named) == 5 and all("bad" in line and "not a recognised image" in line for line in named)
    assert "... and 2 more" in run.stdout
