"""Rank/world from torchrun's environment, and the few collective steps an index build needs.

Only barriers and agreement flags cross processes (gloo, CPU tensors), so the same code runs
under `torchrun` on CPUs or GPUs; embeddings travel through the shard files, not the network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    """This process's place in the job; a single process is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def agree(self, ok: bool) -> bool:
        """True on every rank only if `ok` is true on every rank (also a barrier)."""
        if self.world_size == 1:
            return ok

        flag = torch.tensor([1 if ok else 0], dtype=torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def total(self, value: int) -> int:
        """Sum of an integer over all ranks."""
        if self.world_size == 1:
            return value

        t = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(t)
        return int(t.item())

    def close(self) -> None:
        if self.owns_group:
            dist.destroy_process_group()
            self.owns_group = False


def context_from_env(timeout_s: float = 6 * 3600) -> DistContext:
    """Join the process group torchrun describes (WORLD_SIZE > 1), else a single-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()

    owns = False
    if not dist.is_initialized():
        if os.environ.get("MASTER_ADDR") in ("127.0.0.1", "localhost") and "GLOO_SOCKET_IFNAME" not in os.environ:
            os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # a loopback job must not pick another interface
        dist.init_process_group("gloo", timeout=timedelta(seconds=timeout_s))
        owns = True
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owns)
