"""The trainer: real tiny runs on the shapes world and on files, exact resume after SIGKILL,
gradient accumulation equal to the large batch, DDP equal to one process, skips, divergence, LiT."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image

import clipforge
from clipforge.data.shapes import ShapesClassification, ShapesWorld, write_csv_dataset
from clipforge.evaluate import Evaluator, resolve_dataset
from clipforge.losses import DistillLoss
from clipforge.train import TrainConfig, Trainer, TrainingDiverged, train
from clipforge.train.checkpoint import find_resume, load_training_state
from clipforge.train.data import collate_pairs

SRC = str(Path(__file__).resolve().parents[1] / "src")
BASE = dict(model="tiny", tokenizer="words", workers=0, val_data=None, warmup_steps=2, log_every=1)


def _cfg(tmp_path: Path, **kw) -> TrainConfig:
    return TrainConfig(out_dir=str(tmp_path / kw.pop("name", "run")), **{**BASE, "data": ["shapes:256"], **kw})


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_training_state(find_resume(path / "checkpoints"))["model"]


def test_tiny_run_writes_everything_and_learns(tmp_path):
    cfg = _cfg(
        tmp_path,
        batch_size=32,
        epochs=3,
        save_every=8,
        keep_last=2,
        val_data="shapes",
        val_samples=32,
        eval_every=12,
        lr=2e-3,
    )
    summary = train(cfg, progress=False)
    out = Path(cfg.out_dir)
    assert summary["steps"] == 24 and summary["skipped"] == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 24 and sum(losses[-4:]) / 4 < sum(losses[:4]) / 4  # it learns something
    assert any("val_zs_shape" in r for r in rows)
    assert (out / "curves.png").stat().st_size > 10_000
    assert sorted(p.name for p in (out / "checkpoints").glob("*.pt")) == ["step_00000016.pt", "step_00000024.pt"]
    model, preprocess, tokenizer = clipforge.load(out / "final", device="cpu")
    assert model.config.tokenizer["kind"] == "words" and tokenizer("a red circle.")[0, 0] == tokenizer.sot_token_id
    for k, v in _weights(out).items():
        assert torch.equal(model.state_dict()[k], v), k


def test_gradient_accumulation_equals_large_batch(tmp_path):
    """Accumulated micro-batches keep every negative: loss and gradients equal the full batch's."""
    one = Trainer(_cfg(tmp_path, name="a", batch_size=32, max_steps=2), progress=False)
    four = Trainer(_cfg(tmp_path, name="b", batch_size=32, max_steps=2, accum_steps=4), progress=False)
    pixels, tokens, _ = collate_pairs([one.dataset[i] for i in range(32)])
    loss_a, _ = one._forward_loss([(pixels, tokens)])
    loss_b, _ = four._forward_loss([(pixels[i : i + 8], tokens[i : i + 8]) for i in range(0, 32, 8)])
    assert torch.allclose(loss_a, loss_b, atol=1e-6)
    grads_a = {n: p.grad for n, p in one.model.named_parameters()}
    for n, p in four.model.named_parameters():
        scale = max(1.0, grads_a[n].abs().max().item())
        assert (p.grad - grads_a[n]).abs().max().item() <= 1e-5 * scale, n


def _run_cli(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "clipforge", "train", *args], env=env, **kw)


def test_sigkill_mid_epoch_then_resume_reaches_identical_weights(tmp_path):
    common = [
        "--model",
        "tiny",
        "--tokenizer",
        "words",
        "--data",
        "shapes:512",
        "--batch-size",
        "16",
        "--epochs",
        "2",
        "--workers",
        "1",
        "--warmup-steps",
        "3",
        "--save-every",
        "5",
        "--quiet",
    ]
    ref = _run_cli([*common, "--out-dir", str(tmp_path / "ref")])
    victim = _run_cli([*common, "--out-dir", str(tmp_path / "victim")], stdout=subprocess.DEVNULL)
    ckpts = tmp_path / "victim" / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and not (ckpts.is_dir() and len(list(ckpts.glob("step_*.pt"))) >= 2):
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)  # mid-epoch: 32 steps per epoch, checkpoints every 5
    victim.wait()
    killed_at = load_training_state(find_resume(ckpts))["step"]
    assert 0 < killed_at < 64 and killed_at % 32 != 0
    resumed = _run_cli([*common, "--out-dir", str(tmp_path / "victim")], stdout=subprocess.PIPE, text=True)
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0 and ref.wait(timeout=600) == 0
    assert f"at step {killed_at}" in out
    a, b = _weights(tmp_path / "ref"), _weights(tmp_path / "victim")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_bad_images_and_empty_captions_are_skipped_and_counted(tmp_path):
    from clipforge.data.shapes import ShapesWorld, write_csv_dataset

    manifest = write_csv_dataset(ShapesWorld(size=40), tmp_path / "data", 40)
    lines = manifest.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    (tmp_path / "data" / "images" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    cols = header.split(",")
    bad_rows = [
        ",".join(
            ["images/corrupt.png" if c == "filepath" else ("a red circle." if c == "caption" else "") for c in cols]
        ),
        ",".join(
            ["images/missing.png" if c == "filepath" else ("a blue star." if c == "caption" else "") for c in cols]
        ),
    ]
    first = rows[0].split(",")
    first[cols.index("caption")] = ""
    manifest.write_text("\n".join([header, ",".join(first), *bad_rows, *rows[1:]]) + "\n")
    summary = train(_cfg(tmp_path, data=[str(manifest)], batch_size=14, epochs=1), progress=False)
    assert summary["steps"] == 3 and summary["skipped"] == 3
    reasons = " ".join(summary["skipped_examples"])
    assert "empty caption" in reasons and "corrupt.png" in reasons and "missing.png" in reasons


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    trainer = Trainer(_cfg(tmp_path, batch_size=16, max_steps=10, save_every=2), progress=False)
    real = trainer.loss_fn.forward
    calls = {"n": 0}

    def poisoned(*args, **kw):
        calls["n"] += 1
        loss, logs = real(*args, **kw)
        return (loss * float("nan") if calls["n"] == 5 else loss), logs

    monkeypatch.setattr(trainer.loss_fn, "forward", poisoned)
    with pytest.raises(TrainingDiverged, match="loss is nan at step 4"):
        trainer.fit()
    state = load_training_state(find_resume(Path(trainer.cfg.out_dir) / "checkpoints"))
    assert state["step"] == 4 and all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_locked_image_tower_does_not_move_and_bf16_runs(tmp_path):
    trainer = Trainer(_cfg(tmp_path, batch_size=16, max_steps=3, lock_image=True, precision="bf16"), progress=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    summary = trainer.fit()
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("visual."))
    assert not torch.equal(before["text.token_embedding.weight"], after["text.token_embedding.weight"])
    assert summary["final_loss"] == summary["final_loss"]  # finite, not NaN


def test_fresh_image_tower_trains_against_a_locked_text_tower_of_another_model(tmp_path):
    donor = train(_cfg(tmp_path, name="donor", model="tiny-rn", batch_size=8, max_steps=2), progress=False)
    vit = {"vision": {"image_size": 64}}  # the donor reads 64 px images
    cfg = _cfg(tmp_path, name="vit", batch_size=8, max_steps=2, init_text=donor["final_model"], lock_text=True)
    trainer = Trainer(replace(cfg, model_overrides=vit), progress=False)
    before = {k: v.clone() for k, v in trainer.model.visual.state_dict().items()}
    summary = trainer.fit()
    text_model, _, text_tok = clipforge.load(donor["final_model"], device="cpu")
    student, _, student_tok = clipforge.load(summary["final_model"], device="cpu")
    assert student.config.vision.kind == "vit" and text_model.config.vision.kind == "resnet"
    assert student.config.text == text_model.config.text
    assert student_tok("a big red star.").tolist() == text_tok("a big red star.").tolist()
    ours, theirs = student.state_dict(), text_model.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours if k.startswith("text."))
    assert any(not torch.equal(v, before[k]) for k, v in student.visual.state_dict().items())
    with pytest.raises(ValueError, match="exclude each other"):
        _cfg(tmp_path, init=donor["final_model"], init_text=donor["final_model"])
    with pytest.raises(ValueError, match="embedding width"):
        Trainer(_cfg(tmp_path, name="x", init_text=donor["final_model"], model_overrides={**vit, "embed_dim": 48}))
    with pytest.raises(ValueError, match=r"model_overrides \['text'\] do not apply"):
        _cfg(tmp_path, init_text=donor["final_model"], model_overrides={"text": {"layers": 1}})
    with pytest.raises(ValueError, match="the model 32px"):
        Trainer(_cfg(tmp_path, name="y", init_text=donor["final_model"]))


def test_finetune_from_checkpoint_and_webdataset_and_folder_sources(tmp_path):
    from clipforge.data.shapes import ShapesWorld, write_webdataset

    world = ShapesWorld(size=64, seed=3)
    write_webdataset(world, tmp_path / "shards", 64, shard_size=32)
    folder = tmp_path / "folder"
    folder.mkdir()
    for i in range(16):
        s = world.sample(i)
        s.image.save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(s.caption)
    first = train(_cfg(tmp_path, name="pre", batch_size=16, max_steps=2), progress=False)
    cfg = _cfg(
        tmp_path,
        name="ft",
        batch_size=16,
        max_steps=4,
        init=first["final_model"],
        data=[str(tmp_path / "shards" / "shard-{000000..000001}.tar"), str(folder)],
        weights=[3.0, 1.0],
    )
    summary = train(cfg, progress=False)
    assert summary["steps"] == 4 and summary["skipped"] == 0
    base, _, _ = clipforge.load(first["final_model"], device="cpu")
    tuned, _, _ = clipforge.load(summary["final_model"], device="cpu")
    assert base.config == tuned.config
    assert not torch.equal(base.visual.conv1.weight, tuned.visual.conv1.weight)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("loss,local_loss", [("clip", False), ("clip", True), ("siglip", False), ("cloob", True)])
def test_two_process_ddp_gradient_equals_one_process(tmp_path, loss, local_loss):
    """torchrun with 2 gloo processes: the averaged gradient equals one process's over the global batch."""
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    probe = str(Path(__file__).with_name("ddp_probe.py"))
    grads = {}
    for name, launcher in {
        "ddp": [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(_free_port()),
        ],
        "one": [sys.executable],
    }.items():
        cfg = _cfg(tmp_path, name=name, batch_size=32, max_steps=2, loss=loss, local_loss=local_loss)
        (tmp_path / f"{name}.json").write_text(json.dumps(cfg.to_dict()))
        run = subprocess.run(
            [*launcher, probe, str(tmp_path / f"{name}.json"), str(tmp_path / f"{name}.pt")],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        grads[name] = torch.load(tmp_path / f"{name}.pt")
    for k, g in grads["one"].items():
        scale = max(1.0, g.abs().max().item())
        assert (grads["ddp"][k] - g).abs().max().item() <= 1e-5 * scale, k
    first = [json.loads(x)["loss"] for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()][0]
    ref = [json.loads(x)["loss"] for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()][0]
    assert abs(first - ref) < 1e-4  # logged loss: mean over ranks


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="unknown field"):
        TrainConfig.from_dict({"bach_size": 3})
    with pytest.raises(ValueError, match="divide evenly"):
        Trainer(_cfg(tmp_path, batch_size=10, accum_steps=3), progress=False)
    with pytest.raises(FileNotFoundError, match="manifest"):
        Trainer(_cfg(tmp_path, data=[str(tmp_path / "nope.csv")]), progress=False)


def test_image_source_yields_pil_once(tmp_path):
    """Images decoded from bytes (tar members) and paths give the same tensors."""
    from clipforge.data.pairs import FolderPairs

    img = Image.new("RGB", (40, 30), (200, 10, 10))
    img.save(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("a red square.")
    src = FolderPairs(tmp_path)
    assert len(src) == 1 and src.item(0)[1] == "a red square."


def test_validation_hooks_run_on_evaluation_dataset_specs(tmp_path):
    """val_datasets takes what clipforge.evaluate resolves: zero-shot on a class folder, retrieval on captions."""
    view = ShapesClassification(ShapesWorld(seed=4, image_size=32), task="colour", split="val", size=24)
    for i in range(len(view)):
        image, label = view[i]
        (tmp_path / "colours" / view.classnames[label]).mkdir(parents=True, exist_ok=True)
        image.save(tmp_path / "colours" / view.classnames[label] / f"{i}.png")
    captions = write_csv_dataset(ShapesWorld(seed=5, image_size=32, split="val", size=12), tmp_path / "pairs", 12)
    cfg = _cfg(
        tmp_path, batch_size=16, max_steps=4, eval_every=2, val_datasets=[str(tmp_path / "colours"), str(captions)]
    )
    summary = train(cfg, progress=False)
    rows = [json.loads(line) for line in (Path(cfg.out_dir) / "metrics.jsonl").read_text().splitlines()]
    val_rows = [r for r in rows if any(k.startswith("val_") for k in r)]
    assert [r["step"] for r in val_rows] == [2, 4]
    assert set(summary["validation"]) == {"val_colours_top1", "val_captions_i2t_r1", "val_captions_t2i_r1"}
    assert all(0.0 <= v <= 1.0 for v in summary["validation"].values())
    model, preprocess, tokenizer = clipforge.load(summary["final_model"], device="cpu")
    direct = Evaluator(model, preprocess, tokenizer, progress=False).zeroshot(
        resolve_dataset(tmp_path / "colours").load()
    )
    assert summary["validation"]["val_colours_top1"] == pytest.approx(direct.summary["top1"])
    with pytest.raises(FileNotFoundError, match="not a registered dataset"):
        Trainer(_cfg(tmp_path, name="bad", batch_size=16, val_datasets=[str(tmp_path / "nowhere")]), progress=False)


def test_distillation_from_a_tiny_teacher_moves_the_student_toward_it(tmp_path):
    """loss=distill: the frozen teacher's similarities are the target; the student's match them better."""
    teacher_run = train(
        _cfg(tmp_path, name="teacher", batch_size=32, max_steps=8, lr=2e-3, seed=5, model_overrides={"embed_dim": 24}),
        progress=False,
    )
    student = Trainer(
        _cfg(
            tmp_path,
            name="student",
            batch_size=16,
            max_steps=10,
            lr=2e-3,
            loss="distill",
            teacher=teacher_run["final_model"],
            loss_options={"alpha": 1.0},
        ),
        progress=False,
    )
    assert student.teacher is not None and not any(p.requires_grad for p in student.teacher.parameters())
    teacher_before = {k: v.clone() for k, v in student.teacher.state_dict().items()}
    world = ShapesWorld(seed=1, image_size=32, split="val", size=32)
    samples = [world.sample(i) for i in range(len(world))]
    pixels = torch.stack([student.eval_transform(s.image) for s in samples])
    tokens = student.tokenizer([s.caption for s in samples])
    criterion = DistillLoss(alpha=1.0, rank=0, world_size=1)

    @torch.no_grad()
    def gap_to_teacher() -> float:
        s, t = student.model.eval(), student.teacher
        loss, _ = criterion(
            s.encode_image(pixels, normalize=True),
            s.encode_text(tokens, normalize=True),
            t.encode_image(pixels, normalize=True),
            t.encode_text(tokens, normalize=True),
            s.logit_scale.exp(),
            t.logit_scale.exp(),
        )
        student.model.train()
        return float(loss)

    before = gap_to_teacher()
    student.fit()
    after = gap_to_teacher()
    assert after < 0.95 * before, (before, after)  # held-out pairs: closer to the teacher's similarities
    rows = [json.loads(line) for line in (Path(student.cfg.out_dir) / "metrics.jsonl").read_text().splitlines()]
    distill = [r["distill_loss"] for r in rows if "distill_loss" in r]
    assert len(distill) == 10 and sum(distill[-3:]) < sum(distill[:3])
    assert all(torch.equal(v, student.teacher.state_dict()[k]) for k, v in teacher_before.items())


def test_loss_choice_and_options_reach_the_loss_or_fail_clearly(tmp_path):
    cloob = Trainer(_cfg(tmp_path, name="cloob", batch_size=16, loss="cloob", local_loss=True), progress=False)
    assert cloob.loss_fn.local_loss is True  # CLOOB's own local-loss variant, no longer dropped
    ring = Trainer(
        _cfg(tmp_path, name="ring", batch_size=16, loss="siglip", loss_options={"exchange": "ring"}), progress=False
    )
    assert ring.loss_fn.exchange == "ring"
    with pytest.raises(ValueError, match="local_loss does not apply to the siglip loss"):
        TrainConfig(loss="siglip", local_loss=True)
    with pytest.raises(ValueError, match="distill needs teacher"):
        TrainConfig(loss="distill")
    with pytest.raises(ValueError, match=r"\['temperature'\] are not options of the cloob loss"):
        TrainConfig(loss="cloob", loss_options={"temperature": 0.1})
    with pytest.raises(ValueError, match="alpha must be in"):
        TrainConfig(loss="distill", teacher="t", loss_options={"alpha": 2.0})


def test_removed_tensorboard_field_is_dropped_with_a_warning(tmp_path):
    old = {**_cfg(tmp_path).to_dict(), "tensorboard": False}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    with pytest.warns(UserWarning, match="'tensorboard' was removed"):
        cfg = TrainConfig.from_json(path)
    assert "tensorboard" not in cfg.to_dict() and cfg.model == "tiny"
    with pytest.warns(UserWarning, match="tensorboard"):
        TrainConfig.from_json(Path(clipforge.__file__).parent / "assets" / "default-rn" / "train_config.json")


def test_train_config_file_flag_and_its_deprecated_alias(tmp_path):
    from clipforge.cli.main import build_parser
    from clipforge.cli.train import config_from_args

    base = tmp_path / "run.json"
    base.write_text(json.dumps({"model": "tiny", "batch_size": 8, "max_steps": 3}))
    args = build_parser().parse_args(["train", "--train-config", str(base), "--batch-size", "4"])
    cfg = config_from_args(args)
    assert (cfg.model, cfg.batch_size, cfg.max_steps) == ("tiny", 4, 3)  # the flag wins over the file
    with pytest.warns(FutureWarning, match="--train-config"):
        old = build_parser().parse_args(["train", "--config", str(base)])
    assert config_from_args(old).batch_size == 8
