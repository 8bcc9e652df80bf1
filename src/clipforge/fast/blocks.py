"""Transformer blocks rebuilt from a model's weights for inference with prepared linears.

A block works on any token layout: the caller passes an `attend(qkv) -> out` function that knows
where each sequence's tokens live (dense [B, L, 3D] for images, packed [T, 3D] for texts). The
residual adds run inside the output projections (oneDNN binary post-op) and QuickGELU runs as a
swish post-op of the first MLP linear (weights scaled by 1.702, undone in the second).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..model.layers import ResidualBlock
from .linear import Act, Kind, Linear, make_linear

QUICK_GELU_ALPHA = 1.702

Attend = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class LinearSpec:
    """How to build linears: kernel kind, compute dtype and the expected number of rows."""

    kind: Kind
    dtype: torch.dtype
    rows: int = 1024

    def __call__(self, weight: torch.Tensor, bias: torch.Tensor | None, act: Act = "none") -> Linear:
        return make_linear(weight, bias, self.kind, self.dtype, act, self.rows)


def mlp_linears(block: ResidualBlock, spec: LinearSpec) -> tuple[Linear, Linear]:
    """(fc with fused activation, proj) for the block's MLP."""
    fc, proj = block.mlp.c_fc, block.mlp.c_proj
    act_name = type(block.mlp.gelu).__name__
    if act_name == "QuickGELU":
        # quick_gelu(y) = swish(a·y) / a, so fold a into fc and 1/a into proj.
        a = QUICK_GELU_ALPHA
        return spec(fc.weight * a, fc.bias * a, "swish"), spec(proj.weight / a, proj.bias)
    if act_name == "GELU" and getattr(block.mlp.gelu, "approximate", "none") == "none":
        return spec(fc.weight, fc.bias, "gelu"), spec(proj.weight, proj.bias)
    raise ValueError(f"unsupported MLP activation {act_name}")


class FastBlock:
    """Pre-LN block: x + attn(ln_1(x)); x + mlp(ln_2(x)), with prepared linears.

    When the residual stream is kept in a wider dtype than the linears compute in (bf16 linears,
    fp32 stream), LayerNorm runs on the fp32 stream, its output is cast for the linears and the
    residual adds happen in fp32; otherwise the adds are fused into the output projections.
    """

    def __init__(self, block: ResidualBlock, spec: LinearSpec, residual_dtype: torch.dtype) -> None:
        attn = block.attn
        self.heads = attn.heads
        self.compute_dtype = spec.dtype
        self.fused = residual_dtype == spec.dtype
        self.ln_1 = _norm_params(block.ln_1, residual_dtype)
        self.ln_2 = _norm_params(block.ln_2, residual_dtype)
        self.qkv = spec(attn.in_proj_weight, attn.in_proj_bias)
        self.out = spec(attn.out_proj.weight, attn.out_proj.bias)
        self.fc, self.proj = mlp_linears(block, spec)

    def __call__(self, x: torch.Tensor, attend: Attend) -> torch.Tensor:
        return self.mlp(self.attend(x, attend(self.attention_input(x))))

    def attention_input(self, x: torch.Tensor) -> torch.Tensor:
        """The fused q|k|v projection of ln_1(x)."""
        return self.qkv(self._normed(x, self.ln_1))

    def attend(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """x + out_proj(attention output)."""
        if self.fused:
            return self.out(attended, residual=x)
        return x + self.out(attended)

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        """x + mlp(ln_2(x))."""
        h = self.fc(self._normed(x, self.ln_2))
        if self.fused:
            return self.proj(h, residual=x)
        return x + self.proj(h)

    def _normed(self, x: torch.Tensor, p) -> torch.Tensor:
        h = _ln(x, p)
        return h if self.fused else h.to(self.compute_dtype)


def _norm_params(
    ln: torch.nn.LayerNorm, dtype: torch.dtype
) -> tuple[tuple[int, ...], torch.Tensor, torch.Tensor, float]:
    return (tuple(ln.normalized_shape), ln.weight.detach().to(dtype), ln.bias.detach().to(dtype), ln.eps)


def _ln(x: torch.Tensor, p: tuple[tuple[int, ...], torch.Tensor, torch.Tensor, float]) -> torch.Tensor:
    return F.layer_norm(x, p[0], p[1], p[2], p[3])


def split_heads(qkv: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[B, L, 3D] → q, k, v as strided [B, H, L, D/H] views (no copies)."""
    b, n, d3 = qkv.shape
    qkv = qkv.view(b, n, 3, heads, d3 // (3 * heads)).permute(2, 0, 3, 1, 4)
    return qkv[0], qkv[1], qkv[2]


def merge_heads(out: torch.Tensor) -> torch.Tensor:
    """[B, H, L, Dh] → [B, L, H·Dh] (a view when SDPA already laid the output out token-major)."""
    b, h, n, dh = out.shape
    return out.transpose(1, 2).reshape(b, n, h * dh)
