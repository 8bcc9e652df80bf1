"""The training loop: contrastive pre-training, fine-tuning and distillation on one CPU, one GPU or many (torchrun).

`Trainer` wires the pieces together and runs the loop; each piece lives in its own module:
setup (`distributed.init_run`), models (`model`), data (`loader`), the step (`step`),
checkpoints (`checkpoint`), validation (`validate`) and curves (`report`).
"""

from __future__ import annotations

import json
import math
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from ..checkpoints import save_native
from ..files import write_text_atomic
from ..tokenizer import WordTokenizer
from ..transforms import ImageTransform
from . import checkpoint as ckpt_io
from .config import TrainConfig
from .data import PairDataset
from .distributed import all_reduce_sum, barrier, cleanup, init_run
from .loader import Batch, TrainData
from .model import build_student, load_teacher
from .optim import build_optimizer, set_lr, warmup_cosine_lr
from .report import plot_curves
from .step import ContrastiveStep, Micro, Towers, build_train_loss, wrap_ddp
from .validate import build_validation_hooks, run_validation, shapes_validation_of_other_data

MAX_LOGIT_SCALE = math.log(100)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class Throughput:
    """Samples per second of training since the last `rate()` call (time spent `paused()` not counted)."""

    def __init__(self) -> None:
        self.start, self.samples = time.perf_counter(), 0

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Leave the enclosed time (validation, checkpointing) out of the rate."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.start += time.perf_counter() - began

    def add(self, samples: int) -> None:
        self.samples += samples

    def rate(self) -> float:
        now = time.perf_counter()
        rate = self.samples / max(now - self.start, 1e-9)
        self.start, self.samples = now, 0
        return rate


class Trainer:
    """Owns the model, optimiser, data and run directory of one training run."""

    def __init__(self, cfg: TrainConfig, resume: str | None = "auto", progress: bool = True) -> None:
        self.cfg = cfg  # setup: process group, device, seed, run directory, checkpoint to resume
        self.env = init_run(cfg)
        self.out = Path(cfg.out_dir)
        self.ckpt_dir = self.out / "checkpoints"
        self.progress = progress and self.env.is_main
        resume_path, state, notes = ckpt_io.load_resume(resume, self.ckpt_dir)
        if state is not None:
            self._check_same_run(resume_path, json.loads(state["train_config"]))
        self._warn(notes)

        # models, loss, optimiser and the step that ties them together
        self.model, self.tokenizer = build_student(cfg, state, self.env.device)
        self.teacher = load_teacher(cfg.teacher, self.model, self.tokenizer, self.env.device) if cfg.teacher else None
        self.loss_fn = build_train_loss(cfg, self.env)
        self.towers = Towers(self.model)
        self.ddp = wrap_ddp(self.towers, self.env)
        self.optimizer = build_optimizer(self.model, cfg.lr, cfg.weight_decay, cfg.betas, cfg.eps)
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.precision == "fp16")
        self.forward_backward = ContrastiveStep(
            self.towers, self.ddp, self.loss_fn, self.scaler, cfg.precision, self.teacher
        )

        # data (sources -> dataset -> per-step batches) and validation hooks
        self.data = TrainData(cfg, self.model.config.preprocess, self.tokenizer, self.env)
        self.eval_transform = ImageTransform(self.model.config.preprocess)
        self.val_hooks = build_validation_hooks(cfg)
        self._warn([note] if (note := shapes_validation_of_other_data(cfg)) else [])
        if cfg.warmup_steps >= self.total_steps:
            self._warn([f"--warmup-steps {cfg.warmup_steps} is not shorter than the run ({self.total_steps} steps): "
                        f"the learning rate never reaches --lr {cfg.lr:g}"])

        # counters, restored when resuming
        self.step, self.skipped = 0, 0
        self.history: list[dict[str, Any]] = []
        self.skip_examples: list[str] = []
        if state is not None:
            self._restore(state)
        self._open_run_dir(resume_path)

    # ------------------------------------------------------------------ views of the pieces
    @property
    def dataset(self) -> PairDataset:
        return self.data.dataset

    @property
    def steps_per_epoch(self) -> int:
        return self.data.steps_per_epoch

    @property
    def total_steps(self) -> int:
        return self.data.total_steps

    def _warn(self, notes: list[str]) -> None:
        if self.env.is_main:
            for note in notes:
                print(f"warning: {note}", file=sys.stderr)

    # ------------------------------------------------------------------ checkpoints
    def _check_same_run(self, path: Path | None, saved: dict[str, Any]) -> None:
        """Refuse to resume a checkpoint of a run with another config (naming the fields that differ)."""
        changed = self.cfg.differences(saved)
        if changed:
            raise ValueError(
                f"{path} belongs to a run with another config ({'; '.join(changed)}): train into a new "
                "--out-dir, or pass --resume none to start afresh here (that run's checkpoints are deleted)"
            )

    def _restore(self, state: dict[str, Any]) -> None:
        """Continue a checkpointed run: optimiser, scaler, counters, history and RNG states."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.skipped = state["step"], state["skipped"]
        self.history = json.loads(state["history"])
        ckpt_io.set_rng_state(state["rng"])

    def _open_run_dir(self, resume_path: Path | None) -> None:
        """Create the run directory and write the config there (main process); on resume, drop what a
        killed run left behind: temporary files, and metrics rows logged after its last checkpoint."""
        if self.env.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            ckpt_io.remove_stale_temporaries(self.out, self.ckpt_dir, self.out / "final")
            (self.out / "train_config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2) + "\n")
            # metrics.jsonl may hold rows of steps after the checkpoint (the resumed run logs them again) or
            # of an earlier run (a fresh start): it restarts from the history that goes on
            write_text_atomic(self.out / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in self.history))
            if resume_path:
                print(f"resuming from {resume_path} at step {self.step}")
            elif removed := ckpt_io.remove_checkpoints(self.ckpt_dir):
                print(f"starting afresh: deleted {removed} checkpoint(s) of the earlier run in {self.ckpt_dir}")

    def _save(self) -> None:
        """Checkpoint everything resuming needs (main process writes; all wait)."""
        if self.env.is_main:
            words = list(self.tokenizer.words) if isinstance(self.tokenizer, WordTokenizer) else None
            state = {
                "model": self.model.state_dict(),
                "model_config": self.model.config.to_dict(),
                "train_config": json.dumps(self.cfg.to_dict()),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "step": self.step,
                "skipped": self.skipped,
                "history": json.dumps(self.history),
                "rng": ckpt_io.rng_state(),
                "tokenizer_words": words,
            }
            ckpt_io.save_training_state(self.ckpt_dir, self.step, state, self.cfg.keep_last)
        barrier(self.env)

    # ------------------------------------------------------------------ one step
    def _forward_loss(self, micro: list[Micro]) -> tuple[torch.Tensor, dict]:
        """Forward + backward for one optimiser step; returns the loss and its logged values."""
        return self.forward_backward(micro)

    def _optimizer_step(self) -> float:
        """Scheduled lr, optional clipping, the update, zeroed grads, clamped logit scale; returns the lr."""
        cfg = self.cfg
        lr = warmup_cosine_lr(self.step, cfg.lr, cfg.warmup_steps, self.total_steps, cfg.min_lr)
        set_lr(self.optimizer, lr)
        if cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        return lr

    def _usable(self, batches: list[Batch]) -> tuple[list[Micro], int]:
        """The step's micro-batches that kept at least one pair, and how many pairs were skipped."""
        micro, skips = [], 0
        for pixels, tokens, bad in batches:
            skips += len(bad)
            if len(self.skip_examples) < 20:
                self.skip_examples.extend(bad[: 20 - len(self.skip_examples)])
            if pixels is not None and tokens is not None:
                micro.append((pixels, tokens))
        if not micro:
            raise ValueError(f"step {self.step}: every sample of the batch was unusable; e.g. {bad[:3]}")
        return micro, skips

    def _count_or_diverge(self, loss: torch.Tensor, skips: int) -> None:
        """Add every rank's skips to the count; stop (on every rank) if any rank's loss is not finite."""
        bad_loss, all_skips = all_reduce_sum([float(not torch.isfinite(loss)), skips], self.env)
        self.skipped += int(all_skips)
        if bad_loss:
            raise TrainingDiverged(
                f"loss is {loss.item()} at step {self.step}; stopping. The last good checkpoint "
                f"is {ckpt_io.find_resume(self.ckpt_dir)}. Lower the lr, add --grad-clip, or use fp32."
            )

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict[str, Any]:
        """Train to `total_steps`, checkpointing and validating on the way; returns the final summary."""
        cfg = self.cfg
        bar = tqdm(total=self.total_steps, initial=self.step, desc="training", unit="step", disable=not self.progress)
        speed = Throughput()
        trains = self.step < self.total_steps
        if not trains:
            self._warn([f"the run in {self.out} is complete (step {self.step} of {self.total_steps}): nothing to do"])
        try:
            while self.step < self.total_steps:
                epoch, start = divmod(self.step, self.steps_per_epoch)
                for batches in self.data.epoch_steps(epoch, start):
                    micro, skips = self._usable(batches)
                    loss, logs = self._forward_loss(micro)
                    self._count_or_diverge(loss, skips)
                    lr = self._optimizer_step()
                    self.step += 1
                    speed.add(sum(p.shape[0] for p, _ in micro) * self.env.world_size)
                    bar.update(1)
                    last = self.step == self.total_steps
                    if self.step % cfg.log_every == 0 or last:
                        self._log(epoch, loss, logs, lr, speed.rate(), bar)
                    with speed.paused():
                        if cfg.eval_every and self.step % cfg.eval_every == 0 and not last:
                            self._validate()
                        if self.step % cfg.save_every == 0 and not last:
                            self._save()
            if trains:  # a finished run re-run adds no second validation row
                self._validate()
                self._save()
            summary = self._finish()
        finally:
            bar.close()
            cleanup(self.env)
        return summary

    # ------------------------------------------------------------------ metrics
    def _write_row(self, row: dict[str, Any]) -> None:
        """Keep a metrics row in the history (saved in checkpoints) and append it to metrics.jsonl."""
        self.history.append(row)
        if self.env.is_main:
            with open(self.out / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")

    def _log(self, epoch: int, loss: torch.Tensor, logs: dict, lr: float, rate: float, bar: tqdm) -> None:
        """Log the step's loss (mean over processes), lr, throughput and the loss's own values."""
        loss_sum = all_reduce_sum([float(loss)], self.env)[0] / self.env.world_size
        row = {
            "step": self.step,
            "epoch": epoch,
            "loss": loss_sum,
            "lr": lr,
            "samples_per_s": rate,
            "logit_scale": float(self.model.logit_scale.detach().exp()),
            "skipped": self.skipped,
        }
        row.update({k: float(v) for k, v in logs.items() if k not in row and k != "loss"})
        bar.set_postfix(loss=f"{loss_sum:.4f}", lr=f"{lr:.2e}", sps=f"{rate:.0f}")
        self._write_row(row)

    def _validate(self) -> None:
        """Run the validation hooks on the main process and log their metrics as `val_*`."""
        if self.env.is_main and self.val_hooks:
            metrics = run_validation(self.val_hooks, self.model, self.eval_transform, self.tokenizer)
            self._write_row({"step": self.step, **{f"val_{k}": v for k, v in metrics.items()}})
            if self.progress:
                tqdm.write("validation " + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items()))
        barrier(self.env)

    def _finish(self) -> dict[str, Any]:
        """Write final/ (a model clipforge.load reads), curves.png and summary.json; return the summary."""
        summary = {"steps": self.step, "skipped": self.skipped, "out_dir": str(self.out)}
        if self.env.is_main:
            final = self.out / "final"
            save_native(self.model, final, self.tokenizer, extra={"train_config": self.cfg.to_dict()})
            plot_curves(self.history, self.out / "curves.png")
            train_rows = [r for r in self.history if "loss" in r]
            val_rows = [r for r in self.history if any(k.startswith("val_") for k in r)]
            summary.update(
                final_loss=train_rows[-1]["loss"] if train_rows else None,
                samples_per_s=train_rows[-1]["samples_per_s"] if train_rows else None,
                validation={k: v for k, v in (val_rows[-1] if val_rows else {}).items() if k != "step"},
                final_model=str(final),
                skipped_examples=self.skip_examples[:5],
            )
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary


def train(cfg: TrainConfig, resume: str | None = "auto", progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a training run; see `TrainConfig`."""
    return Trainer(cfg, resume=resume, progress=progress).fit()
