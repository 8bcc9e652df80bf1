"""EvalConfig (evaluate's settings object, --eval-config) and the evaluation-task registry."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clipforge.cli.main import main
from clipforge.evaluate import EvalConfig, EvalResult, evaluate
from clipforge.evaluate.tasks import EvalTask, register_task
from clipforge.registry import EVAL_TASKS


def test_config_validates_and_names_bad_fields(tmp_path):
    with pytest.raises(ValueError, match="max_samples must be positive"):
        EvalConfig(max_samples=0)
    with pytest.raises(ValueError, match="shots must be positive"):
        EvalConfig(shots=(0, 2))
    with pytest.raises(ValueError, match=r"unknown evaluation setting\(s\) \['shot'\]"):
        EvalConfig().replace(shot=3)
    with pytest.raises(ValueError, match="precision 'fp64': expected one of auto, fp32"):
        EvalConfig(precision="fp64")
    with pytest.raises(ValueError, match="backend 'tensorrt'"):
        EvalConfig(backend="tensorrt")
    with pytest.raises(ValueError, match="activation 'relu'"):
        EvalConfig(activation="relu")
    bad = tmp_path / "bad.json"
    bad.write_text('{"batch_size": 0}')
    with pytest.raises(ValueError, match=r"bad\.json: batch_size must be positive"):
        EvalConfig.from_json(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"bad\.json: .*JSON object"):
        EvalConfig.from_json(bad)


def test_eval_config_file_with_flag_overrides(model_dir, tmp_path):
    settings = tmp_path / "eval.json"
    settings.write_text(json.dumps({"max_samples": 12, "templates": ["a {} shape."], "cache_dir": None}))
    base = ["eval", "--dataset", "shapes:colour", "--model", str(model_dir), "--quiet", "--no-plots"]
    assert main([*base, "--out", str(tmp_path / "a"), "--eval-config", str(settings)]) == 0
    a = json.loads(next((tmp_path / "a").glob("*.json")).read_text())
    assert a["dataset"]["n_images"] == 12 and a["parameters"]["templates"] == ["a {} shape."]
    # a flag given with a non-default value wins over the file
    assert main([*base, "--out", str(tmp_path / "b"), "--eval-config", str(settings), "--max-samples", "7"]) == 0
    b = json.loads(next((tmp_path / "b").glob("*.json")).read_text())
    assert b["dataset"]["n_images"] == 7 and b["parameters"]["templates"] == ["a {} shape."]


def test_a_registered_task_runs_by_name_and_is_skipped_where_it_does_not_fit(model_dir, tmp_path):
    def mean_norm(ev, source, test_set, cfg):
        features, ds, _ = ev.embed(test_set())
        norms = np.linalg.norm(features, axis=1)
        return EvalResult("feature-norm", ds.describe(), {"mean_norm": float(norms.mean())}, {}, {})

    register_task("feature-norm", EvalTask(mean_norm, ("labels",)), "mean L2 norm of image features")
    try:
        assert "feature-norm" in EVAL_TASKS.list()
        (run,) = evaluate("feature-norm", "shapes:colour", str(model_dir), None, cache_dir=None, progress=False,
                          max_samples=10)
        assert run.result is not None and run.result.summary["mean_norm"] > 0
        with pytest.raises(ValueError, match="cannot run feature-norm .*no class labels"):
            evaluate("feature-norm", "shapes:captions", str(model_dir), None, cache_dir=None, progress=False)
        with pytest.raises(ValueError, match="registered twice"):
            register_task("feature-norm", EvalTask(mean_norm), "again")
        with pytest.raises(ValueError, match="known needs"):
            register_task("other", EvalTask(mean_norm, ("pixels",)), "bad need")
    finally:
        EVAL_TASKS._entries.pop("feature-norm", None)


def test_adapter_tasks_come_from_the_registry():
    assert [t for t in EVAL_TASKS.list() if EVAL_TASKS.get(t).with_adapter] == ["zeroshot", "robustness"]
