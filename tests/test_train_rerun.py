"""Training does what it was asked or says why not: a re-run into a run directory of another config is
refused (naming the fields), `--max-steps` wins over `--epochs`, a warm-up longer than the run and a
shapes-world validation of other data are warned about, re-runs add no duplicate metrics rows, and
samples/s leaves validation time out."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import run_cli

from clipforge.train import TrainConfig, train
from clipforge.train import trainer as trainer_module

BASE = dict(model="tiny", tokenizer="words", workers=0, val_data=None, warmup_steps=1, log_every=1, batch_size=16)
CLI = ["--model", "tiny", "--tokenizer", "words", "--data", "shapes:64", "--batch-size", "16", "--workers", "0"]
CLI += ["--val-data", "none", "--warmup-steps", "1", "--log-every", "1", "--max-steps", "2", "--quiet"]


def _cfg(tmp_path: Path, **kw) -> TrainConfig:
    return TrainConfig(out_dir=str(tmp_path / kw.pop("name", "run")), **{**BASE, "data": ["shapes:64"], **kw})


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_rerun_with_another_config_is_refused_naming_the_fields(tmp_path):
    out = tmp_path / "run"
    first = run_cli(["train", *CLI, "--out-dir", str(out)])
    assert first.returncode == 0, first.stderr[-2000:]
    final = (out / "final" / "model.safetensors").read_bytes()

    again = run_cli(["train", *CLI, "--out-dir", str(out), "--lr", "0.001", "--seed", "3"])
    assert again.returncode == 2 and "Traceback" not in again.stderr, again.stderr[-2000:]
    assert "belongs to a run with another config (lr: 0.0005 -> 0.001; seed: 0 -> 3)" in again.stderr
    assert "--resume none" in again.stderr
    assert (out / "final" / "model.safetensors").read_bytes() == final
    assert json.loads((out / "train_config.json").read_text())["lr"] == 0.0005  # still describes final/

    # how long it runs may change: two more steps continue the same run
    longer = run_cli(["train", *CLI[:-3], "--max-steps", "4", "--quiet", "--out-dir", str(out)])
    assert longer.returncode == 0, longer.stderr[-2000:]
    assert [r["step"] for r in _rows(out)] == [1, 2, 3, 4]

    fresh = run_cli(["train", *CLI, "--out-dir", str(out), "--lr", "0.001", "--resume", "none"])
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert "starting afresh: deleted" in fresh.stdout
    assert [r["step"] for r in _rows(out)] == [1, 2]  # the earlier run's rows are gone, not mixed in
    assert sorted(p.name for p in (out / "checkpoints").glob("step_*.pt")) == ["step_00000002.pt"]
    assert json.loads((out / "train_config.json").read_text())["lr"] == 0.001


def test_max_steps_wins_over_epochs_and_a_long_warmup_is_warned_about(tmp_path, capsys):
    summary = train(_cfg(tmp_path, epochs=1, max_steps=6, warmup_steps=10), progress=False)  # 4 steps per epoch
    assert summary["steps"] == 6
    assert [r["epoch"] for r in _rows(tmp_path / "run")] == [0, 0, 0, 0, 1, 1]
    err = capsys.readouterr().err
    assert "--warmup-steps 10 is not shorter than the run (6 steps)" in err


def test_rerunning_a_finished_run_adds_no_rows(tmp_path, capsys):
    cfg = _cfg(tmp_path, max_steps=2, val_data="shapes", val_samples=16)
    train(cfg, progress=False)
    before = _rows(tmp_path / "run")
    assert [r["step"] for r in before] == [1, 2, 2]  # two training rows and one validation row
    train(cfg, progress=False)
    assert _rows(tmp_path / "run") == before
    assert "is complete (step 2 of 2): nothing to do" in capsys.readouterr().err


def test_samples_per_second_leave_validation_out(tmp_path, monkeypatch):
    """A validation that takes 1000 s (on the trainer's clock) between two logged steps must not make
    training look slow. The clock is the real one plus the time validations "took", so the test does
    not depend on how busy the machine is."""
    skipped = [0.0]
    real = time.perf_counter

    class Clock:
        @staticmethod
        def perf_counter() -> float:
            return real() + skipped[0]

    def slow_validation(*args, **kwargs):
        skipped[0] += 1000.0
        return {"zs": 0.5}

    monkeypatch.setattr(trainer_module, "time", Clock)
    monkeypatch.setattr(trainer_module, "run_validation", slow_validation)
    cfg = _cfg(tmp_path, max_steps=4, log_every=2, eval_every=1, save_every=100, val_data="shapes")
    summary = train(cfg, progress=False)
    rates = [r["samples_per_s"] for r in _rows(tmp_path / "run") if "samples_per_s" in r]
    # 32 samples per logged interval: with one validation counted the rate would be below 32 / 1000
    assert min(rates) > 0.5 and summary["samples_per_s"] > 0.5, rates


@pytest.mark.parametrize("value", [0, -3])
def test_max_steps_must_be_positive(value):
    with pytest.raises(ValueError, match="max_steps must be >= 1"):
        TrainConfig(max_steps=value)


def test_shapes_validation_of_a_users_folder_is_warned_about(tmp_path, capsys):
    from clipforge.data.shapes import ShapesWorld, write_csv_dataset

    manifest = write_csv_dataset(ShapesWorld(seed=5, image_size=32, size=32), tmp_path / "mine", n=32)
    train(_cfg(tmp_path, data=[str(manifest)], max_steps=1, val_data="shapes", val_samples=16), progress=False)
    err = capsys.readouterr().err
    assert f"validating on the shapes world while training on {manifest}" in err and "--val-datasets" in err
    train(_cfg(tmp_path, name="b", max_steps=1, val_data="shapes", val_samples=16), progress=False)
    assert "validating on the shapes world" not in capsys.readouterr().err
