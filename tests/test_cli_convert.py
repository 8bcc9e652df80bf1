"""`clipforge convert` never loses data: non-empty destinations are refused (unless --force, then the
new directory is written beside the old one and swapped in), the source is never written, and a refused
conversion leaves no folder behind. Through a subprocess, as a user runs it."""

from __future__ import annotations

import pytest
import torch
from conftest import one_line_error, run_cli

import clipforge
from clipforge.config import get_config
from clipforge.model import CLIP


def _tree(path):
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def hf_dir(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("hf") / "hf-small"
    run = run_cli(["convert", str(model_dir), str(out), "--to", "hf"])
    assert run.returncode == 0, run.stderr
    return out


def test_converting_into_the_source_is_refused_and_leaves_it_intact(hf_dir):
    before = _tree(hf_dir)
    for dst in (hf_dir, hf_dir / "inside"):
        run = run_cli(["convert", str(hf_dir), str(dst), "--to", "hf", "--force"])
        one_line_error(
            run,
            "convert",
            f"{dst}: the destination may not be the source, inside it or around it ({hf_dir})",
        )
    assert _tree(hf_dir) == before and not (hf_dir / "inside").exists()


def test_a_non_empty_destination_needs_force_and_is_then_replaced_whole(model_dir, hf_dir, tmp_path):
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "notes.txt").write_text("mine")
    run = run_cli(["convert", str(hf_dir), str(dst), "--to", "native"])
    one_line_error(run, "convert", f"{dst} is not empty: choose a new or empty directory, or replace it (--force)")
    assert (dst / "notes.txt").read_text() == "mine"

    run = run_cli(["convert", str(hf_dir), str(dst), "--to", "native", "--force"])
    assert run.returncode == 0, run.stderr
    assert not (dst / "notes.txt").exists()  # replaced, not mixed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary directory left beside it
    a, _, _ = clipforge.load(model_dir, device="cpu")
    b, _, _ = clipforge.load(dst, device="cpu")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(a.encode_image(x), b.encode_image(x), atol=1e-6)


def test_an_empty_destination_is_fine(hf_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    run = run_cli(["convert", str(hf_dir), str(tmp_path / "empty"), "--to", "openclip"])
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "empty" / "open_clip_config.json").is_file()


def test_a_refused_conversion_leaves_no_folder(tmp_path):
    """HF has no convolutional stem: the writer refuses it, and neither the destination nor a parent made
    for it remains."""
    torch.manual_seed(0)
    model = CLIP(get_config("tiny").replace(vision={"stem_widths": (8,)}))
    clipforge.save(model, tmp_path / "stem", clipforge.get_tokenizer("tiny"))
    run = run_cli(["convert", str(tmp_path / "stem"), str(tmp_path / "new" / "hf"), "--to", "hf"])
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert "stem" in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stem"]
