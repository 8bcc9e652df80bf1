"""Precisions, backends and the one automatic runtime policy.

`resolve_runtime(precision, backend, device)` is the only place where "auto" is decided and where
impossible combinations are refused, for `clipforge.load`, every command and the engines alike.
"""

from __future__ import annotations

from typing import Literal, TypeGuard, get_args

import torch

Precision = Literal["auto", "fp32", "bf16", "fp16", "int8"]
Backend = Literal["auto", "torch", "onnx", "none"]
#: what `load(precision=..., backend=...)` and the `--precision`/`--backend` flags accept
PRECISIONS: tuple[str, ...] = get_args(Precision)
BACKENDS: tuple[str, ...] = get_args(Backend)
#: precisions of the plain model (backend "none") and their dtypes
MODEL_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: precisions and backends an inference engine runs
ENGINE_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")
ENGINE_BACKENDS: tuple[str, ...] = ("torch", "onnx")


def _is_precision(value: object) -> TypeGuard[Precision]:
    return value in PRECISIONS


def _is_backend(value: object) -> TypeGuard[Backend]:
    return value in BACKENDS


def as_precision(value: str) -> Precision:
    """`value` as a `Precision` (what `load` accepts), or ValueError naming the choices."""
    if not _is_precision(value):
        raise ValueError(f"precision {value!r}: expected one of {', '.join(PRECISIONS)}")
    return value


def as_backend(value: str | None) -> Backend | None:
    """`value` as a `Backend` or None (what `load` accepts), or ValueError naming the choices."""
    if value is not None and not _is_backend(value):
        raise ValueError(f"backend {value!r}: expected one of {', '.join(BACKENDS)}")
    return value


def cuda_half_precision() -> str:
    """bf16 where the GPU supports it, else fp16."""
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp16"


def resolve_runtime(precision: str, backend: str | None, device: torch.device | str) -> tuple[str, str]:
    """(precision, backend) with "auto" resolved and the combination checked; backend "none" = the plain model.

    Automatic choices: on the CPU the prepared engine (backend "torch") in fp32, whose features stay
    within 1e-4 of the model's and which is faster (docs/performance.md); on CUDA the plain model, in
    bf16 where the GPU supports it (else fp16). bf16 and int8 on the CPU are opt-in, because they
    change the numbers. `backend=None` means "none".
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    backend = "none" if backend is None else backend
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    cuda = torch.device(device).type == "cuda"
    if backend == "auto":
        backend = "torch" if precision == "int8" or not cuda else "none"
    if precision == "auto":
        precision = cuda_half_precision() if cuda else "fp32"
        if backend == "onnx" or (backend == "torch" and precision == "fp16"):
            precision = "fp32"
    if backend == "none" and precision == "int8":
        raise ValueError("precision int8 (dynamic quantisation) needs an engine: use backend 'torch' or 'onnx'")
    if backend != "none" and precision == "fp16":
        raise ValueError(f"backend {backend!r} runs fp32, bf16 or int8; fp16 needs backend 'none' (the plain model)")
    if backend == "onnx" and precision == "bf16":
        raise ValueError("backend 'onnx' runs fp32 or int8; for bf16 use backend 'torch'")
    if precision == "int8" and cuda:
        raise ValueError("precision int8 (dynamic quantisation) runs on the CPU only")
    return precision, backend


def engine_precision(device: torch.device | str) -> str:
    """The precision an engine built without an explicit one uses: `resolve_runtime`'s choice, never fp16."""
    precision, _ = resolve_runtime("auto", "torch", device)
    return precision


def model_dtype(precision: str) -> torch.dtype:
    if precision not in MODEL_DTYPES:
        raise ValueError(f"precision {precision!r}: the plain model runs {', '.join(MODEL_DTYPES)}")
    return MODEL_DTYPES[precision]
