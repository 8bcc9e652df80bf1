"""`torch.compile` (inductor, frozen weights) over the pruned tower graphs.

Inductor with `freezing` folds the weights into the graph, prepacks them for oneDNN/MKL and fuses
the elementwise work (LayerNorm, GELU, residual adds) into generated C++ kernels. The first call
for each new input shape compiles (tens of seconds on 2 cores); text batches are cut to their
longest caption and compiled with a dynamic length.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch

from ..model import CLIP
from .encoder import FastCLIP
from .graph import ImageGraph, TextGraph, cut_to_longest

COMPILE_OPTIONS: dict[str, str | int | bool | Callable[..., Any]] = {"freezing": True}


def compiled_engine(model: CLIP, precision: str):
    """A `FastCLIP` running the compiled graphs in fp32 or bf16 (int8 is not compiled)."""

    if precision == "int8":
        raise ValueError("compile=True supports fp32 and bf16; int8 runs eagerly (compile=False)")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    work = copy.deepcopy(model).to(dtype).eval()
    for p in work.parameters():
        p.requires_grad_(False)
    image = torch.compile(ImageGraph(work), options=COMPILE_OPTIONS, dynamic=False)
    text = torch.compile(TextGraph(work), options=COMPILE_OPTIONS, dynamic=True)

    def image_fn(pixels: torch.Tensor) -> torch.Tensor:
        return image(pixels.to(dtype))

    def text_fn(tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] > work.config.text.context_length:
            raise ValueError(
                f"text tokens have length {tokens.shape[1]}, longer than the model's context "
                f"{work.config.text.context_length}"
            )
        if tokens.shape[0] == 0:
            return torch.zeros(0, work.config.embed_dim, device=tokens.device)
        return text(cut_to_longest(tokens, work.config))

    return FastCLIP(model, image_fn, text_fn, precision, "torch", f"torch.compile inductor {precision}")
