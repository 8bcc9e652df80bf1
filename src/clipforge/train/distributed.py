"""Run setup: the process group for torchrun (gloo on CPU, NCCL on CUDA), each rank's device, the seed."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .config import TrainConfig


@dataclass
class DistEnv:
    """This process's place in the run: rank, local rank, number of processes and device."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None = None) -> DistEnv:
    """Read torchrun's environment; initialise the process group when there is more than one rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        dev = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device(f"cuda:{local}")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistEnv(rank, local, world, dev)


def init_run(cfg: TrainConfig) -> DistEnv:
    """Join the process group, check the batch splits evenly and the precision fits the device, seed torch."""
    env = init_distributed(cfg.device)
    if cfg.batch_size % (env.world_size * cfg.accum_steps):
        raise ValueError(
            f"batch_size {cfg.batch_size} must divide evenly over {env.world_size} process(es) "
            f"x {cfg.accum_steps} accumulation steps"
        )
    if cfg.precision == "fp16" and env.device.type != "cuda":
        raise ValueError("fp16 training needs CUDA (it relies on a gradient scaler); use bf16 on the CPU")
    torch.manual_seed(cfg.seed)
    return env


def all_reduce_sum(values: list[float], env: DistEnv) -> list[float]:
    if not env.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=env.device)
    dist.all_reduce(t)
    return t.tolist()


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def cleanup(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()
