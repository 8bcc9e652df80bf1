"""Two-process (gloo, CPU) checks that distributed losses reproduce single-process training on the global batch.

Each rank holds half of a fixed global batch, encodes it with a tiny linear "model", back-propagates its own loss and
averages parameter gradients across ranks as DDP does. Compared with the single-process loss on the whole batch:

* exact variants (gather with grad; any ``local_loss``; SigLIP gather/ring; CLOOB; distillation): averaged gradients
  equal the single-process gradients; per-rank loss equals the global loss when ``local_loss=False`` and the mean of
  the per-rank losses equals it otherwise (and for SigLIP).
* ClipLoss ``gather_with_grad=False, local_loss=False``: loss exact; tower gradients are exactly 1/world_size of the
  global ones (only the local slice carries gradient); scale/bias gradients exact.
* ClipLoss ``gather_with_grad=False, local_loss=True``: mean loss and scale gradient exact, tower gradients wrong (not
  proportional): each rank misses the terms where its samples are negatives in other ranks' rows.

All variants run in one spawn of two processes to keep start-up cost low.
"""

from __future__ import annotations

import math
import time
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from clipforge.losses import build_loss

WORLD = 2
GLOBAL_BATCH = 8
PARAMS = ("w_img", "w_txt", "log_scale", "bias")
TOWERS = ("w_img", "w_txt")

# name -> (loss name, constructor kwargs)
VARIANTS: dict[str, tuple[str, dict[str, object]]] = {
    "clip": ("clip", {}),
    "clip_local": ("clip", {"local_loss": True}),
    "clip_nograd": ("clip", {"gather_with_grad": False}),
    "clip_nograd_local": ("clip", {"gather_with_grad": False, "local_loss": True}),
    "siglip": ("siglip", {}),
    "siglip_ring": ("siglip", {"exchange": "ring"}),
    "cloob": ("cloob", {}),
    "cloob_local": ("cloob", {"local_loss": True}),
    "distill": ("distill", {"alpha": 0.5}),
    "distill_local": ("distill", {"alpha": 0.5, "local_loss": True}),
}
EXACT = [v for v in VARIANTS if not v.startswith("clip_nograd")]
LOCAL_LOSS = {"clip_local", "clip_nograd_local", "siglip", "siglip_ring", "cloob_local", "distill_local"}


def _data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    return {
        "x_img": torch.randn(GLOBAL_BATCH, 6, generator=g, dtype=torch.float64),
        "x_txt": torch.randn(GLOBAL_BATCH, 5, generator=g, dtype=torch.float64),
        "teacher_img": torch.randn(6, 3, generator=g, dtype=torch.float64),
        "teacher_txt": torch.randn(5, 3, generator=g, dtype=torch.float64),
        "w_img": torch.randn(6, 4, generator=g, dtype=torch.float64),
        "w_txt": torch.randn(5, 4, generator=g, dtype=torch.float64),
    }


def _loss_and_grads(variant: str, rows: slice) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of this process's ``rows`` and the parameter gradients of its backward pass."""
    data = _data()
    params = {
        "w_img": data["w_img"].clone().requires_grad_(True),
        "w_txt": data["w_txt"].clone().requires_grad_(True),
        "log_scale": torch.tensor(math.log(5.0), dtype=torch.float64, requires_grad=True),
        "bias": torch.tensor(-2.0, dtype=torch.float64, requires_grad=True),
    }
    x_img, x_txt = data["x_img"][rows], data["x_txt"][rows]
    img = F.normalize(x_img @ params["w_img"], dim=-1)
    txt = F.normalize(x_txt @ params["w_txt"], dim=-1)
    name, kwargs = VARIANTS[variant]
    loss_fn = build_loss(name, **kwargs)
    scale = params["log_scale"].exp()
    if name == "distill":
        t_img = F.normalize(x_img @ data["teacher_img"], dim=-1)
        t_txt = F.normalize(x_txt @ data["teacher_txt"], dim=-1)
        loss, _ = loss_fn(img, txt, t_img, t_txt, scale, 20.0)
    else:
        loss, _ = loss_fn(img, txt, scale, params["bias"])
    loss.backward()
    grads = {k: p.grad if p.grad is not None else torch.zeros_like(p) for k, p in params.items()}
    return loss.detach(), grads


def _worker(rank: int, init_file: str, out_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60)
    )
    try:
        local = GLOBAL_BATCH // WORLD
        results: dict[str, dict[str, object]] = {}
        for variant in VARIANTS:
            loss, grads = _loss_and_grads(variant, slice(rank * local, (rank + 1) * local))
            losses = [torch.zeros_like(loss) for _ in range(WORLD)]
            dist.all_gather(losses, loss)
            for g in grads.values():  # what DDP does
                dist.all_reduce(g)
                g /= WORLD
            results[variant] = {"losses": torch.stack(losses), "grads": grads}
        if rank == 0:
            torch.save(results, out_file)
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def distributed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    tmp = tmp_path_factory.mktemp("losses_dist")
    out = tmp / "results.pt"
    ctx = mp.spawn(_worker, args=(str(tmp / "pg_init"), str(out)), nprocs=WORLD, join=False)
    deadline = time.monotonic() + 60
    try:
        while not ctx.join(timeout=1):
            if time.monotonic() > deadline:
                raise TimeoutError("distributed loss workers did not finish in 60 s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
    return torch.load(out)


@pytest.fixture(scope="module")
def single() -> dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    assert not (dist.is_available() and dist.is_initialized())
    return {v: _loss_and_grads(v, slice(None)) for v in VARIANTS}


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", EXACT)
def test_exact_variants_match_single_process(variant: str, distributed: dict, single: dict) -> None:
    ref_loss, ref_grads = single[variant]
    losses, grads = distributed[variant]["losses"], distributed[variant]["grads"]
    if variant in LOCAL_LOSS:
        _close(losses.mean(), ref_loss)  # each rank scores only its rows; the mean over ranks is the global loss
        assert not torch.allclose(losses[0], losses[1])
    else:
        _close(losses, ref_loss.expand(WORLD))  # every rank computes the global loss
    for k in PARAMS:
        _close(grads[k], ref_grads[k])
    assert all(ref_grads[k].abs().max() > 1e-3 for k in TOWERS + ("log_scale",))  # non-trivial gradients


def test_siglip_ring_equals_gather(distributed: dict) -> None:
    _close(distributed["siglip_ring"]["losses"], distributed["siglip"]["losses"])


def test_clip_gather_without_grad_scales_tower_gradients(distributed: dict, single: dict) -> None:
    ref_loss, ref_grads = single["clip_nograd"]
    losses, grads = distributed["clip_nograd"]["losses"], distributed["clip_nograd"]["grads"]
    _close(losses, ref_loss.expand(WORLD))
    for k in TOWERS:  # only the local slice carries gradient: the DDP average is 1/world_size of the true gradient
        _close(grads[k] * WORLD, ref_grads[k])
    for k in ("log_scale", "bias"):  # replicated scalars see the whole loss on every rank
        _close(grads[k], ref_grads[k])


def test_clip_local_loss_without_gather_grad_is_not_equivalent(distributed: dict, single: dict) -> None:
    ref_loss, ref_grads = single["clip_nograd_local"]
    losses, grads = distributed["clip_nograd_local"]["losses"], distributed["clip_nograd_local"]["grads"]
    _close(losses.mean(), ref_loss)
    _close(grads["log_scale"], ref_grads["log_scale"])
    for k in TOWERS:  # neither equal nor a rescaling of the global gradient
        for factor in (1, WORLD):
            assert (grads[k] * factor - ref_grads[k]).abs().max() > 1e-3
