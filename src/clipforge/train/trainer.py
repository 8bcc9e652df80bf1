"""The training loop: contrastive pre-training and fine-tuning on one CPU, one GPU or many (torchrun).

A step consumes `batch_size` pairs, split over ranks and `accum_steps` micro-batches. With
accumulation the loss still sees every negative of the whole step: features of all micro-batches
are computed without gradients first, then each micro-batch is recomputed with gradients and
substituted into the full feature matrix (gradient caching), so the gradient equals the
large-batch gradient exactly.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..checkpoints import save_native
from ..config import ModelConfig, get_config
from ..model import CLIP
from ..tokenizer import BPETokenizer, WordTokenizer, load_tokenizer
from ..transforms import ImageTransform, TrainTransform
from . import checkpoint as ckpt_io
from .config import TrainConfig
from .data import EpochPlan, PairDataset, collate_pairs, open_source
from .distributed import DistEnv, all_reduce_sum, barrier, cleanup, init_distributed
from .optim import build_optimizer, lr_at, set_lr

MAX_LOGIT_SCALE = math.log(100)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class _Towers(nn.Module):
    """What DDP wraps: normalised features plus the exp'ed logit scale and the bias."""

    def __init__(self, model: CLIP) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor, tokens: torch.Tensor):
        m = self.model
        bias = m.logit_bias
        return m.encode_image(pixels, normalize=True), m.encode_text(tokens, normalize=True), m.logit_scale.exp(), bias


class _StepBatches:
    """Batch sampler: for each step from `start_step`, this rank's `accum_steps` micro-batches of indices."""

    def __init__(self, steps: int, start_step: int, global_batch: int, env: DistEnv, accum: int) -> None:
        self.steps, self.start, self.global_batch, self.env, self.accum = steps, start_step, global_batch, env, accum
        self.per_rank = global_batch // env.world_size
        self.micro = self.per_rank // accum

    def __len__(self) -> int:
        return (self.steps - self.start) * self.accum

    def __iter__(self):
        for step in range(self.start, self.steps):
            base = step * self.global_batch + self.env.rank * self.per_rank
            for m in range(self.accum):
                lo = base + m * self.micro
                yield list(range(lo, lo + self.micro))


def build_tokenizer(cfg: TrainConfig, context_length: int):
    if cfg.tokenizer == "bpe":
        return BPETokenizer.from_bpe_file(context_length=context_length)
    from ..data.shapes import vocabulary

    sources = [open_source(s) for s in cfg.data]
    if all(type(s).__name__ == "ShapesSource" for s in sources):
        words = vocabulary(punctuation=True)
    else:
        words = WordTokenizer.build([s.item(i)[1] for s in sources for i in range(min(len(s), 200_000))]).words
    return WordTokenizer(words, context_length=context_length)


def build_model_and_tokenizer(cfg: TrainConfig) -> tuple[CLIP, Any]:
    """A fresh model from a preset/config (+ tokenizer), or an existing checkpoint to fine-tune."""
    if cfg.init:
        from ..api import load

        model, _, tokenizer = load(cfg.init, device="cpu")
        return model.float(), tokenizer
    if Path(cfg.model).suffix == ".json":
        data = json.loads(Path(cfg.model).read_text())
        model_cfg = ModelConfig.from_dict(data.get("model", data))
    else:
        model_cfg = get_config(cfg.model)
    if cfg.model_overrides:
        model_cfg = model_cfg.replace(**cfg.model_overrides)
    tokenizer = build_tokenizer(cfg, model_cfg.text.context_length)
    if cfg.tokenizer == "words":
        model_cfg = model_cfg.replace(
            text={"vocab_size": tokenizer.vocab_size, "eot_token_id": tokenizer.eot_token_id},
            tokenizer={"kind": "words"},
        )
    if cfg.loss == "siglip" and model_cfg.init_logit_bias is None:
        model_cfg = model_cfg.replace(init_logit_scale=math.log(10), init_logit_bias=-10.0)
    return CLIP(model_cfg), tokenizer


class Trainer:
    """Owns the model, optimiser, data and run directory of one training run."""

    def __init__(self, cfg: TrainConfig, resume: str | None = "auto", progress: bool = True) -> None:
        self.cfg = cfg
        self.env = init_distributed(cfg.device)
        self.out = Path(cfg.out_dir)
        self.ckpt_dir = self.out / "checkpoints"
        self.progress = progress and self.env.is_main
        if cfg.batch_size % (self.env.world_size * cfg.accum_steps):
            raise ValueError(
                f"batch_size {cfg.batch_size} must divide evenly over {self.env.world_size} process(es) "
                f"x {cfg.accum_steps} accumulation steps"
            )
        if cfg.precision == "fp16" and self.env.device.type != "cuda":
            raise ValueError("fp16 training needs CUDA (it relies on a gradient scaler); use bf16 on the CPU")
        resume_path = self._resume_path(resume)
        state = ckpt_io.load_training_state(resume_path) if resume_path else None

        torch.manual_seed(cfg.seed)
        if state is not None:
            model_cfg = ModelConfig.from_dict(state["model_config"])
            self.model = CLIP(model_cfg)
            self.model.load_state_dict(state["model"])
            self.tokenizer = self._tokenizer_from_state(state, model_cfg)
        else:
            self.model, self.tokenizer = build_model_and_tokenizer(cfg)
        self.model.to(self.env.device).train()
        self._lock_towers()
        if cfg.grad_checkpointing:
            self.model.set_grad_checkpointing(True)

        from ..losses import build_loss

        rank_kw = {"rank": self.env.rank, "world_size": self.env.world_size}
        loss_kw = {"local_loss": cfg.local_loss, "gather_with_grad": cfg.gather_with_grad} if cfg.loss == "clip" else {}
        self.loss_fn = build_loss(cfg.loss, **rank_kw, **loss_kw)
        self.towers = _Towers(self.model)
        self.ddp: nn.Module = self.towers
        if self.env.distributed:
            ids = [self.env.device.index] if self.env.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.towers, device_ids=ids)
        self.optimizer = build_optimizer(self.model, cfg.lr, cfg.weight_decay, cfg.betas, cfg.eps)
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.precision == "fp16")

        sources = [open_source(s) for s in cfg.data]
        sizes = [len(s) for s in sources]
        if min(sizes) == 0:
            raise ValueError(f"empty training source(s): {[s.name for s, n in zip(sources, sizes) if n == 0]}")
        per_epoch = cfg.samples_per_epoch or sum(sizes)
        self.steps_per_epoch = per_epoch // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"{per_epoch} samples per epoch is less than one batch of {cfg.batch_size}")
        self.total_steps = min(cfg.max_steps or 10**18, self.steps_per_epoch * cfg.epochs)
        self.plan = EpochPlan(sizes, cfg.weights or [1.0] * len(sources), per_epoch, cfg.seed)
        pre = self.model.config.preprocess
        self.train_transform = TrainTransform(pre, scale=cfg.train_crop_scale, hflip=cfg.hflip)
        self.eval_transform = ImageTransform(pre)
        self.dataset = PairDataset(sources, self.plan, self.train_transform, self.tokenizer)

        self.step, self.skipped, self.history = 0, 0, []
        self.skip_examples: list[str] = []
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
            self.step, self.skipped = state["step"], state["skipped"]
            self.history = json.loads(state["history"])
            ckpt_io.set_rng_state(state["rng"])
        if self.env.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
            if resume_path:
                print(f"resuming from {resume_path} at step {self.step}")

    # ------------------------------------------------------------------ setup helpers
    def _resume_path(self, resume: str | None) -> Path | None:
        if resume in (None, "", "none"):
            return None
        if resume == "auto":
            return ckpt_io.find_resume(self.ckpt_dir)
        path = Path(resume)
        if path.is_dir():
            path = ckpt_io.find_resume(path / "checkpoints" if (path / "checkpoints").is_dir() else path)
        if path is None or not path.is_file():
            raise FileNotFoundError(f"no checkpoint to resume from at {resume}")
        return path

    @staticmethod
    def _tokenizer_from_state(state: dict[str, Any], model_cfg: ModelConfig):
        ctx = model_cfg.text.context_length
        if state.get("tokenizer_words"):
            return WordTokenizer(list(state["tokenizer_words"]), context_length=ctx)
        if state.get("tokenizer_dir"):
            return load_tokenizer(state["tokenizer_dir"], context_length=ctx)
        return BPETokenizer.from_bpe_file(context_length=ctx)

    def _lock_towers(self) -> None:
        text_params = [p for n, p in self.model.named_parameters() if n.startswith("text.")]
        image_params = [p for n, p in self.model.named_parameters() if n.startswith("visual.")]
        for locked, params in ((self.cfg.lock_image, image_params), (self.cfg.lock_text, text_params)):
            for p in params:
                p.requires_grad_(not locked)

    def _autocast(self):
        if self.cfg.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.cfg.precision == "bf16" else torch.float16
        return torch.autocast(self.env.device.type, dtype=dtype)

    # ------------------------------------------------------------------ one step
    def _forward_loss(self, micro: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, dict]:
        """Forward + backward for one optimiser step; returns the loss and its logged values."""
        dev = self.env.device
        micro = [(p.to(dev, non_blocking=True), t.to(dev, non_blocking=True)) for p, t in micro]
        if len(micro) == 1:
            with self._autocast():
                img, txt, scale, bias = self.ddp(*micro[0])
                loss, logs = self.loss_fn(img.float(), txt.float(), scale.float(), _f(bias))
            self.scaler.scale(loss).backward()
            return loss.detach(), logs
        with torch.no_grad(), self._autocast():
            cached = [self.towers(p, t)[:2] for p, t in micro]
        all_img = torch.cat([c[0] for c in cached]).float()
        all_txt = torch.cat([c[1] for c in cached]).float()
        offset = 0
        for j, (p, t) in enumerate(micro):
            last = j == len(micro) - 1
            sync = contextlib.nullcontext() if last or not self.env.distributed else self.ddp.no_sync()
            with sync:
                with self._autocast():
                    img, txt, scale, bias = self.ddp(p, t)
                n = img.shape[0]
                img_full = torch.cat([all_img[:offset], img.float(), all_img[offset + n :]])
                txt_full = torch.cat([all_txt[:offset], txt.float(), all_txt[offset + n :]])
                if not last:  # the scale/bias gradient is taken once, in the last (synchronised) pass
                    scale, bias = scale.detach(), None if bias is None else bias.detach()
                loss, logs = self.loss_fn(img_full, txt_full, scale.float(), _f(bias))
                self.scaler.scale(loss).backward()
            offset += n
        return loss.detach(), logs

    def _optimizer_step(self) -> float:
        cfg = self.cfg
        lr = lr_at(self.step, cfg.lr, cfg.warmup_steps, self.total_steps, cfg.min_lr)
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

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict[str, Any]:
        """Train to `total_steps`, checkpointing and validating on the way; returns the final summary."""
        cfg, env = self.cfg, self.env
        bar = tqdm(total=self.total_steps, initial=self.step, desc="training", unit="step", disable=not self.progress)
        t_window, n_window = time.perf_counter(), 0
        try:
            while self.step < self.total_steps:
                epoch, start = divmod(self.step, self.steps_per_epoch)
                steps_this_epoch = min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)
                self.dataset.set_epoch(epoch)
                sampler = _StepBatches(steps_this_epoch, start, cfg.batch_size, env, cfg.accum_steps)
                loader = DataLoader(
                    self.dataset,
                    batch_sampler=sampler,
                    num_workers=cfg.workers,
                    collate_fn=collate_pairs,
                    pin_memory=env.device.type == "cuda",
                    persistent_workers=False,
                    prefetch_factor=4 if cfg.workers else None,
                )
                it = iter(loader)
                for _ in range(start, steps_this_epoch):
                    micro, step_skips = [], 0
                    for _ in range(cfg.accum_steps):
                        pixels, tokens, bad = next(it)
                        step_skips += len(bad)
                        if len(self.skip_examples) < 20:
                            self.skip_examples.extend(bad[: 20 - len(self.skip_examples)])
                        if pixels is not None:
                            micro.append((pixels, tokens))
                    if not micro:
                        raise ValueError(f"step {self.step}: every sample of the batch was unusable; e.g. {bad[:3]}")
                    loss, logs = self._forward_loss(micro)
                    bad_loss, skips = all_reduce_sum([float(not torch.isfinite(loss)), step_skips], env)
                    self.skipped += int(skips)
                    if bad_loss:
                        raise TrainingDiverged(
                            f"loss is {loss.item()} at step {self.step}; stopping. The last good checkpoint "
                            f"is {ckpt_io.find_resume(self.ckpt_dir)}. Lower the lr, add --grad-clip, or use fp32."
                        )
                    lr = self._optimizer_step()
                    self.step += 1
                    n_window += sum(p.shape[0] for p, _ in micro) * env.world_size
                    bar.update(1)
                    if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                        rate = n_window / max(time.perf_counter() - t_window, 1e-9)
                        t_window, n_window = time.perf_counter(), 0
                        self._log(epoch, loss, logs, lr, rate, bar)
                    if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < self.total_steps:
                        self._validate()
                    if self.step % cfg.save_every == 0 and self.step < self.total_steps:
                        self._save()
            self._validate()
            self._save()
            summary = self._finish()
        finally:
            bar.close()
            cleanup(env)
        return summary

    def _log(self, epoch: int, loss: torch.Tensor, logs: dict, lr: float, rate: float, bar) -> None:
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
        self.history.append(row)
        bar.set_postfix(loss=f"{loss_sum:.4f}", lr=f"{lr:.2e}", sps=f"{rate:.0f}")
        if self.env.is_main:
            with open(self.out / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")

    def _validate(self) -> None:
        if self.env.is_main and self.cfg.val_data == "shapes":
            from .validate import validate_shapes

            metrics = validate_shapes(
                self.model, self.eval_transform, self.tokenizer, self.cfg.val_samples, self.cfg.seed
            )
            row = {"step": self.step, **{f"val_{k}": v for k, v in metrics.items()}}
            self.history.append(row)
            with open(self.out / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")
            if self.progress:
                tqdm.write("validation " + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items()))
        barrier(self.env)

    def _save(self) -> None:
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

    def _finish(self) -> dict[str, Any]:
        summary = {"steps": self.step, "skipped": self.skipped, "out_dir": str(self.out)}
        if self.env.is_main:
            final = self.out / "final"
            save_native(self.model, final, self.tokenizer, extra={"train_config": self.cfg.to_dict()})
            from .report import plot_curves

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


def _f(bias: torch.Tensor | None) -> torch.Tensor | None:
    return None if bias is None else bias.float()


def train(cfg: TrainConfig, resume: str | None = "auto", progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a training run; see `TrainConfig`."""
    return Trainer(cfg, resume=resume, progress=progress).fit()
