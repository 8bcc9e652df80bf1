"""Contrastive training losses for CLIP-style models: CLIP (InfoNCE), SigLIP, CLOOB and TinyCLIP-style distillation.

Conventions shared by every loss here:

* Features are L2-normalised ``[batch, dim]`` tensors (what ``CLIP.encode_*`` + ``normalize`` / ``CLIPOutput`` give).
* ``logit_scale`` is the *multiplier* ``s = exp(model.logit_scale)``, i.e. already exponentiated: the trainer passes
  ``model.logit_scale.exp()`` (``CLIPOutput.logit_scale`` already is). Passing the raw log-parameter is a silent bug.
* ``forward`` returns ``(loss, logs)``; ``logs`` holds detached 0-dim tensors (no host sync on GPU; call ``float()``
  when logging).
* Nothing assumes a batch size, so a trainer may pass the concatenated features of an accumulated batch in which one
  micro-batch was recomputed with grad (see :func:`splice_features`).

Distributed semantics (``torch.distributed`` initialised, ``world_size > 1``; every rank must hold the same local
batch size, e.g. ``drop_last=True``). The all-gather with gradient (:func:`gather_features`, ``gather_with_grad=True``)
sums, in backward, the gradients every rank computed for a slice and hands the sum to that slice's owner. Hence, if
rank ``r`` back-propagates its own loss ``L_r``, gradients averaged across ranks by DDP equal the gradient of
``mean_r L_r``. Each loss below is arranged so that ``mean_r L_r`` is exactly the single-process loss over the global
batch, so DDP training matches single-device training on the global batch:

* ``ClipLoss``/``CloobLoss``/``DistillLoss`` with ``local_loss=False``: every rank computes the full global loss.
* the same with ``local_loss=True``: rank ``r`` takes only its rows (``B_local x B_global`` logits); mean over ranks =
  global loss.
* ``SigLipLoss``: rank ``r`` scores its images against all texts, normalised by the local batch (big_vision).

With ``gather_with_grad=False`` (OpenCLIP's cheaper option) the gathered copies carry no gradient and only the local
slice is swapped back in. For ``local_loss=False`` the averaged tower gradients are then exactly ``1/world_size`` of
the global-batch gradient (the scale/bias gradients stay exact); for ``local_loss=True`` they are *not* proportional
to it (each rank misses the terms where its samples act as negatives for other ranks' rows).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .registry import LOSSES

__all__ = [
    "LOSSES",
    "ClipLoss",
    "CloobLoss",
    "DistillLoss",
    "SigLipLoss",
    "build_loss",
    "gather_features",
    "hopfield_retrieve",
    "info_loob",
    "resolve_world",
    "splice_features",
]

Logs = dict[str, torch.Tensor]
Scalar = torch.Tensor | float


# --------------------------------------------------------------------------------------------------------------------
# Distributed helpers
# --------------------------------------------------------------------------------------------------------------------


def resolve_world(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)``: explicit values win, else torch.distributed's, else ``(0, 1)``.

    Resolved at call time so a loss built before ``init_process_group`` still sees the process group.
    """
    initialized = dist.is_available() and dist.is_initialized()
    if world_size is None:
        world_size = dist.get_world_size() if initialized else 1
    if rank is None:
        rank = dist.get_rank() if initialized and world_size > 1 else 0
    if world_size > 1 and not initialized:
        raise RuntimeError(f"world_size={world_size} but torch.distributed is not initialised")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside [0, {world_size})")
    return rank, world_size


class _AllGatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums every rank's gradient for the local slice.

    Backward all-reduces the full gradient (works on gloo and NCCL) and keeps this rank's rows: the result is
    ``sum_k dL_k/dx_r``, the gradient of the sum of all ranks' losses w.r.t. this rank's input, not scaled by
    world size (DDP's averaging then yields the gradient of the mean loss).
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
        ctx.rank, ctx.batch = rank, tensor.shape[0]
        tensor = tensor.contiguous()
        parts = [torch.empty_like(tensor) for _ in range(world_size)]
        dist.all_gather(parts, tensor)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        grad = grad.contiguous().clone()  # all_reduce is in place; never modify autograd's buffer
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.batch
        return grad[start : start + ctx.batch], None, None


def _all_gather(tensor: torch.Tensor, with_grad: bool, rank: int, world_size: int) -> torch.Tensor:
    if with_grad:
        return _AllGatherWithGrad.apply(tensor, rank, world_size)
    parts = [torch.empty_like(tensor) for _ in range(world_size)]
    dist.all_gather(parts, tensor.detach().contiguous())
    parts[rank] = tensor  # OpenCLIP's trick: the local slice keeps its graph
    return torch.cat(parts)


def gather_features(
    *features: torch.Tensor,
    gather_with_grad: bool = True,
    rank: int | None = None,
    world_size: int | None = None,
) -> tuple[torch.Tensor, ...]:
    """All-gather per-rank ``[B_local, ...]`` tensors into ``[world_size * B_local, ...]`` (rank order).

    Tensors sharing dtype/device travel in one collective. ``gather_with_grad=True``: gradients reach every rank's
    slice (see :class:`_AllGatherWithGrad`). ``False``: other ranks' slices are constants and only the local slice,
    substituted back in, carries gradient. Without a process group (or ``world_size == 1``) returns the inputs.
    All ranks must pass the same local batch size.
    """
    rank, world_size = resolve_world(rank, world_size)
    if world_size == 1 or not features:
        return tuple(features)
    batch = features[0].shape[0]
    if any(f.shape[0] != batch for f in features):
        raise ValueError(f"all features must share the batch size, got {[f.shape[0] for f in features]}")
    same = all(f.dtype == features[0].dtype and f.device == features[0].device for f in features)
    if not same:
        return tuple(_all_gather(f, gather_with_grad, rank, world_size) for f in features)
    flat = [f.reshape(batch, -1) for f in features]
    widths = [f.shape[1] for f in flat]
    gathered = _all_gather(torch.cat(flat, dim=1), gather_with_grad, rank, world_size)
    return tuple(g.reshape(-1, *f.shape[1:]) for g, f in zip(gathered.split(widths, dim=1), features))


class _RingShift(torch.autograd.Function):
    """Send a tensor to rank+1 and receive rank-1's; backward sends the gradient the opposite way."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
        ctx.rank, ctx.world_size = rank, world_size
        return _send_recv(tensor, (rank + 1) % world_size, (rank - 1) % world_size)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return _send_recv(grad, (ctx.rank - 1) % ctx.world_size, (ctx.rank + 1) % ctx.world_size), None, None


def _send_recv(tensor: torch.Tensor, send_to: int, recv_from: int) -> torch.Tensor:
    tensor = tensor.contiguous()
    out = torch.empty_like(tensor)
    ops = [dist.P2POp(dist.isend, tensor, send_to), dist.P2POp(dist.irecv, out, recv_from)]
    for req in dist.batch_isend_irecv(ops):
        req.wait()
    return out


def splice_features(cached: torch.Tensor, fresh: torch.Tensor, start: int) -> torch.Tensor:
    """``cached`` (no grad) with rows ``start:start+len(fresh)`` replaced by ``fresh`` (with grad).

    Gradient accumulation that keeps every negative: encode all micro-batches under ``no_grad``, concatenate, then for
    each micro-batch re-encode it with grad, splice it in and back-propagate the loss on the full tensors. Summed over
    micro-batches, the parameter gradients equal those of the loss on the whole batch (encoders must be
    deterministic, e.g. no dropout, for the recomputed slice to match the cache).
    """
    end = start + fresh.shape[0]
    if start < 0 or end > cached.shape[0]:
        raise ValueError(f"slice [{start}, {end}) outside cached batch of {cached.shape[0]}")
    cached = cached.detach()
    return torch.cat([cached[:start], fresh.to(cached.dtype), cached[end:]])


# --------------------------------------------------------------------------------------------------------------------
# CLIP (symmetric InfoNCE)
# --------------------------------------------------------------------------------------------------------------------


def _as_tensor(value: Scalar, like: torch.Tensor) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    return torch.tensor(float(value), dtype=like.dtype, device=like.device)


def _contrastive_logits(
    image: torch.Tensor,
    text: torch.Tensor,
    all_image: torch.Tensor,
    all_text: torch.Tensor,
    scale: Scalar,
    bias: Scalar | None,
    local_rows: bool,
    rank: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, slice]:
    """``(logits_per_image, logits_per_text, labels, local_row_slice)`` for (possibly gathered) features.

    ``local_rows``: only this rank's rows against all columns (``B_local x B_global``); otherwise the full
    ``B_global x B_global`` matrix, of which ``local_row_slice`` marks this rank's rows.
    """
    # softmax-CE is shift invariant: the bias only keeps a model's logit_bias in the graph (zero gradient, DDP-safe)
    b = image.shape[0]
    if local_rows:
        per_image = scale * image @ all_text.T
        per_text = scale * text @ all_image.T
        if bias is not None:
            per_image, per_text = per_image + bias, per_text + bias
        labels = torch.arange(b, device=image.device) + rank * b
        return per_image, per_text, labels, slice(0, b)
    per_image = scale * all_image @ all_text.T
    if bias is not None:
        per_image = per_image + bias
    labels = torch.arange(all_image.shape[0], device=image.device)
    return per_image, per_image.T, labels, slice(rank * b, (rank + 1) * b)


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (logits.detach().argmax(dim=1) == labels).float().mean()


class ClipLoss(nn.Module):
    """CLIP's symmetric InfoNCE: ``½[CE(s·F·Tᵀ, y) + CE(s·T·Fᵀ, y)]`` with ``y`` the matching index.

    Args:
        gather: all-gather features across ranks so every sample sees the global batch's negatives.
        gather_with_grad: back-propagate through the gather (exact DDP gradients); ``False`` only keeps the local
            slice's gradient (cheaper; tower gradients become ``1/world_size`` of exact, or wrong with local_loss).
        local_loss: each rank scores only its own rows against all columns: ``O(B_local·B_global)`` logits instead of
            ``O(B_global²)``; the per-rank loss differs but its mean over ranks equals the global loss.
        rank, world_size: override torch.distributed's (resolved at each call).
    """

    def __init__(
        self,
        gather: bool = True,
        gather_with_grad: bool = True,
        local_loss: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        self.gather, self.gather_with_grad, self.local_loss = gather, gather_with_grad, local_loss
        self.rank, self.world_size = rank, world_size

    def _world(self) -> tuple[int, int]:
        return resolve_world(self.rank, self.world_size) if self.gather else (0, 1)

    def logits(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: Scalar,
        logit_bias: Scalar | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, slice]:
        """Gather if distributed and return ``(logits_per_image, logits_per_text, labels, local_rows)``."""
        rank, world_size = self._world()
        all_image, all_text = image_features, text_features
        if world_size > 1:
            all_image, all_text = gather_features(
                image_features, text_features, gather_with_grad=self.gather_with_grad, rank=rank, world_size=world_size
            )
        local_rows = self.local_loss and world_size > 1
        return _contrastive_logits(
            image_features, text_features, all_image, all_text, logit_scale, logit_bias, local_rows, rank
        )

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: Scalar,
        logit_bias: Scalar | None = None,
    ) -> tuple[torch.Tensor, Logs]:
        """Loss and logs (``loss``, ``i2t_acc``/``t2i_acc`` on this rank's rows, ``logit_scale``).

        ``logit_scale`` is the exponentiated multiplier (``model.logit_scale.exp()``).
        """
        per_image, per_text, labels, rows = self.logits(image_features, text_features, logit_scale, logit_bias)
        loss = 0.5 * (F.cross_entropy(per_image, labels) + F.cross_entropy(per_text, labels))
        logs = {
            "loss": loss.detach(),
            "i2t_acc": _accuracy(per_image[rows], labels[rows]),
            "t2i_acc": _accuracy(per_text[rows], labels[rows]),
            "logit_scale": _as_tensor(logit_scale, image_features).detach(),
        }
        return loss, logs


# --------------------------------------------------------------------------------------------------------------------
# SigLIP
# --------------------------------------------------------------------------------------------------------------------


class SigLipLoss(nn.Module):
    """SigLIP pairwise sigmoid loss: ``-(1/B_local) Σ_ij log σ(ℓ_ij·(s·f_i·t_j + b))``, ``ℓ = +1`` iff matched.

    Distributed: rank ``r`` scores its local images against every rank's texts, positives only on its own diagonal,
    normalised by the local batch (big_vision); the mean over ranks equals the single-process loss on the global
    batch, and DDP-averaged gradients match it exactly.

    Args:
        exchange: ``"gather"`` all-gathers texts with gradient and forms one ``B_local x B_global`` logit block
            (peak memory ``O(B_local·B_global)`` for logits plus ``O(B_global·d)`` features). ``"ring"`` passes text
            chunks around the ring (``world_size - 1`` point-to-point hops, gradients routed back the same way) and
            forms ``B_local x B_local`` blocks one at a time, so no full-width logit matrix is materialised at once
            (autograd still keeps each block's activations until backward).
        rank, world_size: override torch.distributed's (resolved at each call).
    """

    def __init__(self, rank: int | None = None, world_size: int | None = None, exchange: str = "gather") -> None:
        super().__init__()
        if exchange not in ("gather", "ring"):
            raise ValueError(f"exchange must be 'gather' or 'ring', got {exchange!r}")
        self.rank, self.world_size, self.exchange = rank, world_size, exchange

    @staticmethod
    def _block(
        image: torch.Tensor, text: torch.Tensor, scale: Scalar, bias: Scalar | None, diagonal: int | None
    ) -> torch.Tensor:
        """Summed ``-log σ(ℓ·z)`` of one block; ``diagonal`` is the offset of the positives (``None``: all negative)."""
        z = scale * image @ text.T
        if bias is not None:
            z = z + bias
        if diagonal is None:
            return F.softplus(z).sum()  # -log σ(-z)
        signs = -torch.ones_like(z)
        signs.diagonal(diagonal).fill_(1.0)
        return -F.logsigmoid(signs * z).sum()

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: Scalar,
        logit_bias: Scalar | None = None,
    ) -> tuple[torch.Tensor, Logs]:
        """Loss and logs (``loss``, ``logit_scale``, ``logit_bias``). ``logit_bias=None`` means no bias."""
        rank, world_size = resolve_world(self.rank, self.world_size)
        b = image_features.shape[0]
        if world_size == 1:
            total = self._block(image_features, text_features, logit_scale, logit_bias, 0)
        elif self.exchange == "gather":
            (all_text,) = gather_features(text_features, gather_with_grad=True, rank=rank, world_size=world_size)
            total = self._block(image_features, all_text, logit_scale, logit_bias, rank * b)
        else:
            total = self._block(image_features, text_features, logit_scale, logit_bias, 0)
            chunk = text_features
            for _ in range(world_size - 1):
                chunk = _RingShift.apply(chunk, rank, world_size)
                total = total + self._block(image_features, chunk, logit_scale, logit_bias, None)
        loss = total / b
        logs = {"loss": loss.detach(), "logit_scale": _as_tensor(logit_scale, image_features).detach()}
        if logit_bias is not None:
            logs["logit_bias"] = _as_tensor(logit_bias, image_features).detach()
        return loss, logs


# --------------------------------------------------------------------------------------------------------------------
# CLOOB
# --------------------------------------------------------------------------------------------------------------------


def hopfield_retrieve(stored: torch.Tensor, queries: torch.Tensor, beta: float) -> torch.Tensor:
    """Modern-Hopfield retrieval ``normalize(softmax(β·Q·Sᵀ)·S)``: one unit-norm pattern per query row."""
    return F.normalize(torch.softmax(beta * queries @ stored.T, dim=-1) @ stored, dim=-1)


def info_loob(
    anchors: torch.Tensor, candidates: torch.Tensor, inv_tau: Scalar, positive_offset: int = 0
) -> torch.Tensor:
    """InfoLOOB ``τ·mean_i[-a_i·c_p/τ + logsumexp_{j≠p}(a_i·c_j/τ)]`` with ``p = i + positive_offset``.

    Leave-one-out: the positive is excluded from the denominator (needs at least two candidates). Scaled by ``τ``
    as in CLOOB so the gradient magnitude does not grow with the inverse temperature.
    """
    logits = inv_tau * anchors @ candidates.T
    positive = logits.diagonal(positive_offset)
    mask = torch.zeros_like(logits, dtype=torch.bool)
    mask.diagonal(positive_offset).fill_(True)
    negatives = logits.masked_fill(mask, float("-inf")).logsumexp(dim=1)
    return (negatives - positive).mean() / inv_tau


class CloobLoss(nn.Module):
    """CLOOB: InfoLOOB on Hopfield-retrieved embeddings, ``LOOB(U_x, V_x) + LOOB(V_y, U_y)``.

    ``U_x``/``U_y``: images/texts retrieved by image queries; ``V_x``/``V_y``: images/texts retrieved by text
    queries (stored patterns = the whole, gathered, batch). The retrieval amplifies co-occurring features and
    InfoLOOB avoids InfoNCE's saturation.

    Args:
        inv_tau: fixed inverse temperature used when ``forward`` gets ``logit_scale=None`` (CLOOB default: fixed; 30
            in the README recipe). Pass ``model.logit_scale.exp()`` instead to learn it.
        hopfield_scale: retrieval inverse temperature β (8 in CLOOB).
        gather, gather_with_grad, local_loss, rank, world_size: as :class:`ClipLoss`. With ``local_loss`` only the
            anchor retrievals (U_x, V_y) are restricted to local queries; the candidate sets stay global.
    """

    def __init__(
        self,
        inv_tau: float = 30.0,
        hopfield_scale: float = 8.0,
        gather: bool = True,
        gather_with_grad: bool = True,
        local_loss: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        self.inv_tau, self.hopfield_scale = inv_tau, hopfield_scale
        self.gather, self.gather_with_grad, self.local_loss = gather, gather_with_grad, local_loss
        self.rank, self.world_size = rank, world_size

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: Scalar | None = None,
        logit_bias: Scalar | None = None,
    ) -> tuple[torch.Tensor, Logs]:
        """Loss and logs (``loss``, ``loss_img``, ``loss_txt``, ``logit_scale``).

        ``logit_scale``: exponentiated inverse temperature, or ``None`` for the fixed ``inv_tau``. ``logit_bias`` is
        accepted for a uniform interface and ignored (InfoLOOB is shift invariant); under DDP a model whose
        ``logit_bias`` (or, with ``None``, ``logit_scale``) goes unused needs it frozen or ``find_unused_parameters``.
        """
        rank, world_size = resolve_world(self.rank, self.world_size) if self.gather else (0, 1)
        scale = self.inv_tau if logit_scale is None else logit_scale
        all_image, all_text = image_features, text_features
        if world_size > 1:
            all_image, all_text = gather_features(
                image_features, text_features, gather_with_grad=self.gather_with_grad, rank=rank, world_size=world_size
            )
        local = self.local_loss and world_size > 1
        image_q, text_q = (image_features, text_features) if local else (all_image, all_text)
        offset = rank * image_features.shape[0] if local else 0
        beta = self.hopfield_scale
        u_x = hopfield_retrieve(all_image, image_q, beta)
        v_y = hopfield_retrieve(all_text, text_q, beta)
        v_x = hopfield_retrieve(all_image, all_text, beta)
        u_y = hopfield_retrieve(all_text, all_image, beta)
        loss_img = info_loob(u_x, v_x, scale, offset)
        loss_txt = info_loob(v_y, u_y, scale, offset)
        loss = loss_img + loss_txt
        logs = {
            "loss": loss.detach(),
            "loss_img": loss_img.detach(),
            "loss_txt": loss_txt.detach(),
            "logit_scale": _as_tensor(scale, image_features).detach(),
        }
        return loss, logs


# --------------------------------------------------------------------------------------------------------------------
# Distillation (TinyCLIP affinity mimicking)
# --------------------------------------------------------------------------------------------------------------------


def _soft_cross_entropy(target_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Row-mean of ``-Σ_j softmax(target)_j · log_softmax(logits)_j`` (= KL + teacher entropy)."""
    return -(target_logits.softmax(dim=1) * logits.log_softmax(dim=1)).sum(dim=1).mean()


class DistillLoss(nn.Module):
    """TinyCLIP affinity mimicking: the student's image→text and text→image softmax rows match the teacher's.

    ``loss = α·½[softCE(teacher I2T, student I2T) + softCE(teacher T2I, student T2I)] + (1-α)·ClipLoss(student)``.
    Teacher features and scale are treated as constants (no gradient). Gathering and ``local_loss`` behave as in
    :class:`ClipLoss` (teacher features are gathered without gradient).
    """

    def __init__(
        self,
        alpha: float = 1.0,
        gather: bool = True,
        gather_with_grad: bool = True,
        local_loss: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.alpha = alpha
        self.clip = ClipLoss(gather, gather_with_grad, local_loss, rank, world_size)

    def forward(
        self,
        student_image: torch.Tensor,
        student_text: torch.Tensor,
        teacher_image: torch.Tensor,
        teacher_text: torch.Tensor,
        logit_scale_student: Scalar,
        logit_scale_teacher: Scalar,
    ) -> tuple[torch.Tensor, Logs]:
        """Loss and logs (``loss``, ``distill_loss``, ``clip_loss``, accuracies, ``logit_scale``)."""
        s_image, s_text, labels, rows = self.clip.logits(student_image, student_text, logit_scale_student)
        teacher = ClipLoss(self.clip.gather, False, self.clip.local_loss, self.clip.rank, self.clip.world_size)
        with torch.no_grad():
            t_scale = logit_scale_teacher
            if isinstance(t_scale, torch.Tensor):
                t_scale = t_scale.detach()
            t_image, t_text, _, _ = teacher.logits(teacher_image.detach(), teacher_text.detach(), t_scale)
        distill = 0.5 * (_soft_cross_entropy(t_image, s_image) + _soft_cross_entropy(t_text, s_text))
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.alpha < 1.0):
            hard = 0.5 * (F.cross_entropy(s_image, labels) + F.cross_entropy(s_text, labels))
        loss = distill if self.alpha == 1.0 else self.alpha * distill + (1.0 - self.alpha) * hard
        logs = {
            "loss": loss.detach(),
            "distill_loss": distill.detach(),
            "clip_loss": hard.detach(),
            "i2t_acc": _accuracy(s_image[rows], labels[rows]),
            "t2i_acc": _accuracy(s_text[rows], labels[rows]),
            "logit_scale": _as_tensor(logit_scale_student, student_image).detach(),
        }
        return loss, logs


# --------------------------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------------------------

LOSSES.register("clip", ClipLoss)
LOSSES.register("siglip", SigLipLoss)
LOSSES.register("cloob", CloobLoss)
LOSSES.register("distill", DistillLoss)


def build_loss(name: str, **kwargs: object) -> nn.Module:
    """Instantiate a loss by name (one of :data:`LOSSES`, case-insensitive) with constructor ``kwargs``."""
    return LOSSES.create(name, **kwargs)
