"""Long jobs show progress on stderr and end with a summary on stdout: `adapt` (features, views, the
method's epochs) and `export` (graphs, verification); `--quiet`/`--json` turn the bars off."""

from __future__ import annotations

import pytest
from conftest import run_cli

ADAPT = ["adapt", "--method", "coop", "--dataset", "shapes:colour?image_size=32", "--max-samples", "24"]
ADAPT += ["--shots", "1", "--views", "2", "--set", "n_ctx=2", "--set", "epochs=2", "--no-cache", "--device", "cpu"]


def test_adapt_shows_features_views_and_epochs_then_a_summary(model_dir):
    run = run_cli([*ADAPT, "--model", str(model_dir)])
    assert run.returncode == 0, run.stderr[-2000:]
    for bar in ("image features", "augmented views", "coop: 100%", "2/2 [", "epoch"):
        assert bar in run.stderr, (bar, run.stderr[-2000:])
    assert "test_accuracy:" in run.stdout and "seconds:" in run.stdout

    quiet = run_cli([*ADAPT, "--model", str(model_dir), "--quiet"])
    assert quiet.returncode == 0 and "image features" not in quiet.stderr and "coop:" not in quiet.stderr


def test_export_shows_its_stages_then_a_summary(model_dir, tmp_path):
    for module in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(module)
    run = run_cli(["export", str(model_dir), str(tmp_path / "onnx")])
    assert run.returncode == 0, run.stderr[-2000:]
    assert "exporting to ONNX" in run.stderr and "3/3" in run.stderr, run.stderr[-2000:]
    assert "exported in" in run.stdout and "onnxruntime vs torch max abs" in run.stdout
