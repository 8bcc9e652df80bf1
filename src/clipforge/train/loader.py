"""Training data of a run: sources → epoch plan → `PairDataset` → this rank's micro-batches, step by step.

The k-th sample of an epoch is fixed by (seed, epoch, k) and step s of an epoch reads samples
`s*batch .. (s+1)*batch`, so a run resumed at any step reads exactly what it would have read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader

from ..config import PreprocessConfig
from ..data.pairs import open_pairs
from ..transforms import TrainTransform
from .config import TrainConfig
from .data import EpochPlan, PairDataset, collate_pairs
from .distributed import DistEnv

#: What the loader yields per micro-batch: pixels and tokens of the usable pairs (None if none
#: was) and the reasons the others were skipped.
Batch = tuple[torch.Tensor | None, torch.Tensor | None, list[str]]


class StepBatches:
    """Batch sampler: for each step from `start_step`, this rank's `accum_steps` micro-batches of indices."""

    def __init__(self, steps: int, start_step: int, global_batch: int, env: DistEnv, accum: int) -> None:
        self.steps, self.start, self.global_batch, self.env, self.accum = steps, start_step, global_batch, env, accum
        self.per_rank = global_batch // env.world_size
        self.micro = self.per_rank // accum

    def __len__(self) -> int:
        return (self.steps - self.start) * self.accum

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.steps):
            base = step * self.global_batch + self.env.rank * self.per_rank
            for m in range(self.accum):
                lo = base + m * self.micro
                yield list(range(lo, lo + self.micro))


class TrainData:
    """The run's dataset and schedule (`steps_per_epoch`, `total_steps`) and its per-step batches."""

    def __init__(self, cfg: TrainConfig, preprocess: PreprocessConfig, tokenizer: Callable, env: DistEnv) -> None:
        sources = [open_pairs(s) for s in cfg.data]
        sizes = [len(s) for s in sources]
        if min(sizes) == 0:
            raise ValueError(f"empty training source(s): {[s.name for s, n in zip(sources, sizes) if n == 0]}")
        per_epoch = cfg.samples_per_epoch or sum(sizes)
        self.steps_per_epoch = per_epoch // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"{per_epoch} samples per epoch is less than one batch of {cfg.batch_size}")
        # --max-steps wins over --epochs: the epochs go on (each a fresh permutation) until it is reached
        self.total_steps = cfg.max_steps or self.steps_per_epoch * cfg.epochs
        self.plan = EpochPlan(sizes, cfg.weights or [1.0] * len(sources), per_epoch, cfg.seed)
        self.transform = TrainTransform(preprocess, scale=cfg.train_crop_scale, hflip=cfg.hflip)
        self.dataset = PairDataset(sources, self.plan, self.transform, tokenizer)
        self.batch_size, self.accum_steps, self.workers, self.env = cfg.batch_size, cfg.accum_steps, cfg.workers, env

    def epoch_steps(self, epoch: int, start: int) -> Iterator[list[Batch]]:
        """The micro-batches of each step of `epoch` from step `start` on (up to `total_steps`)."""
        steps = min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)
        self.dataset.set_epoch(epoch)
        loader = DataLoader(
            self.dataset,
            batch_sampler=StepBatches(steps, start, self.batch_size, self.env, self.accum_steps),
            num_workers=self.workers,
            collate_fn=collate_pairs,
            pin_memory=self.env.device.type == "cuda",
            persistent_workers=False,
            prefetch_factor=4 if self.workers else None,
        )
        it = iter(loader)
        for _ in range(start, steps):
            yield [next(it) for _ in range(self.accum_steps)]
