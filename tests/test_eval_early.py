"""`clipforge eval` that cannot run a task for lack of samples says so before any work, naming the task,
the dataset and the splits (it used to embed and score other tasks first, then fail with "test: no samples")."""

from __future__ import annotations

import numpy as np
from conftest import one_line_error, run_cli
from PIL import Image


def _tiny_folder(root):
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(root / c / f"{i}.png")
    return root


def test_a_probe_without_test_samples_fails_before_any_task_runs(model_dir, tmp_path):
    data, out = _tiny_folder(tmp_path / "pets"), tmp_path / "results"
    args = ["eval", "--dataset", str(data), "--task", "zeroshot", "linear-probe", "--model", str(model_dir)]
    run = run_cli([*args, "--no-cache", "--quiet", "--out", str(out)])
    one_line_error(
        run,
        "eval",
        "cannot run linear-probe on 'pets': a probe needs samples in every split, and one is empty: "
        "train 2, val 2, test (all) 0 (no train split: a stratified 60/20/20 train/val/test split of 'all' was made)",
    )
    assert not out.exists()  # zero-shot did not run first


def test_with_all_tasks_the_probes_are_skipped_with_the_reason(model_dir, tmp_path):
    data = _tiny_folder(tmp_path / "pets")
    args = ["eval", "--dataset", str(data), "--task", "all", "--model", str(model_dir), "--no-cache", "--quiet"]
    run = run_cli([*args, "--out", str(tmp_path / "results")])
    assert run.returncode == 0, run.stderr[-2000:]
    assert "linear-probe  skipped: a probe needs samples in every split" in run.stdout
