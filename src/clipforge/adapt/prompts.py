"""Prompt learning plumbing shared by CoOp, CoCoOp, MaPLe and TPT.

A learned prompt is a token sequence `[SOS] v_1 … v_M name . [EOS]` (or the class name in the
middle / at the front) whose context slots hold free vectors in the token-embedding space instead
of word embeddings. `PromptTokens` builds the token ids and slot positions once per class set;
`encode_prompts` runs the frozen text tower on them (optionally replacing the slots again before
deeper layers, for MaPLe), and `encode_image_prompted` runs a ViT with extra prompt tokens.
Both are composed from the model's own submodules, so with the slots holding the real word
embeddings they reproduce `encode_text`/`encode_image` exactly.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

from ..model.clip import TextTransformer, eot_positions
from .towers import vit_tower

Position = Literal["end", "middle", "front"]


class PromptTokens:
    """Token ids [C, L] of context-slot prompts for each class name, and the slot positions [C, M]."""

    def __init__(
        self,
        tokenizer,
        classnames: Sequence[str],
        n_ctx: int,
        position: Position = "end",
        suffix: str = "{}.",
    ) -> None:
        if position not in ("end", "middle", "front"):
            raise ValueError(f"class token position must be end, middle or front, got {position!r}")
        if n_ctx < 0:
            raise ValueError(f"n_ctx must be >= 0, got {n_ctx}")
        ctx_len = int(tokenizer.context_length)
        slot = int(tokenizer.pad_token_id)  # placeholder id; its embedding is always replaced
        rows, slots = [], []
        for name in classnames:
            name_ids = tokenizer.encode(suffix.format(name))
            dot_ids = tokenizer.encode(".") if position != "end" else []
            if position == "end":
                body, where = [slot] * n_ctx + name_ids, list(range(n_ctx))
            elif position == "front":
                name_ids = tokenizer.encode(name)
                body, where = name_ids + [slot] * n_ctx + dot_ids, [len(name_ids) + j for j in range(n_ctx)]
            else:
                name_ids = tokenizer.encode(name)
                half = n_ctx // 2
                body = [slot] * half + name_ids + [slot] * (n_ctx - half) + dot_ids
                where = list(range(half)) + [half + len(name_ids) + j for j in range(n_ctx - half)]
            start = [tokenizer.sot_token_id] if tokenizer.has_sot else []
            ids = [*start, *body, tokenizer.eot_token_id]
            if len(ids) > ctx_len:
                raise ValueError(
                    f"the prompt for {name!r} needs {len(ids)} tokens with {n_ctx} context vectors; "
                    f"the text tower's context is {ctx_len}: use fewer context vectors"
                )
            rows.append(ids + [tokenizer.pad_token_id] * (ctx_len - len(ids)))
            slots.append([len(start) + j for j in where])
        self.tokens = torch.tensor(rows, dtype=torch.long)
        self.slots = torch.tensor(slots, dtype=torch.long).reshape(len(rows), n_ctx)
        self.n_ctx = n_ctx


def init_context(
    text: TextTransformer, tokenizer, n_ctx: int, init: str | None, classes: int | None = None
) -> torch.Tensor:
    """Initial context vectors: the word embeddings of `init` (M = its token count) or N(0, 0.02²).

    Shape [M, width], or [classes, M, width] for class-specific context.
    """
    width = text.token_embedding.weight.shape[1]
    if init:
        ids = torch.tensor(tokenizer.encode(init), dtype=torch.long, device=text.token_embedding.weight.device)
        if n_ctx and len(ids) != n_ctx:
            raise ValueError(f"context init {init!r} has {len(ids)} tokens but n_ctx={n_ctx}; make them agree")
        ctx = text.token_embedding(ids).detach().float().clone()
    else:
        ctx = torch.randn(n_ctx, width) * 0.02
    return ctx.expand(classes, *ctx.shape).clone() if classes else ctx


def encode_prompts(
    text: TextTransformer,
    tokens: torch.Tensor,
    slots: torch.Tensor,
    ctx: torch.Tensor,
    deep: Sequence[torch.Tensor] = (),
) -> torch.Tensor:
    """Un-normalised text features [N, d] of prompts whose slots hold `ctx`.

    `tokens` [N, L], `slots` [N, M]; `ctx` [M, w] (shared), or [N, M, w]. `deep[i]` ([M, w] or
    [N, M, w]) replaces the slot states before transformer block i + 1 (MaPLe's deep prompts).
    """
    device = text.token_embedding.weight.device
    tokens, slots = tokens.to(device), slots.to(device)
    eot = eot_positions(tokens, text.cfg)
    length = int(eot.max()) + 1  # causal attention: positions after the last EOT change nothing
    tokens = tokens[:, :length]
    n, m = slots.shape
    rows = torch.arange(n, device=device)[:, None].expand(n, m)

    def put(x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        values = values.to(x.dtype)
        return x.index_put((rows, slots), values.expand(n, m, x.shape[-1]) if values.dim() == 2 else values)

    x = put(text.token_embedding(tokens), ctx)
    x = x + text.positional_embedding[:length].to(x.dtype)  # the tower's dtype (bf16 models stay bf16)
    for i, block in enumerate(text.transformer.resblocks):
        if 1 <= i <= len(deep):
            x = put(x, deep[i - 1])
        x = block(x, causal=text.cfg.causal)
    x = text.ln_final(x)
    return text.project(x[torch.arange(n, device=device), eot])


def encode_image_prompted(visual: nn.Module, pixels: torch.Tensor, prompts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Un-normalised ViT image features with prompt tokens appended after the patch tokens.

    `prompts[0]` [M, w] joins the sequence before `ln_pre` (after positional embeddings);
    `prompts[i]` replaces the last M tokens before block i (MaPLe's deep vision prompts).
    """
    visual = vit_tower(visual, "vision prompts need a Vision Transformer image tower (this model has a ResNet)")
    x = visual.embed(pixels)
    b = x.shape[0]
    m = prompts[0].shape[0] if prompts else 0
    if m:
        x = torch.cat([x, prompts[0].to(x.dtype).expand(b, m, -1)], dim=1)
    x = visual.ln_pre(x)
    for i, block in enumerate(visual.transformer.resblocks):
        if m and 1 <= i < len(prompts):
            x = torch.cat([x[:, :-m], prompts[i].to(x.dtype).expand(b, m, -1)], dim=1)
        x = block(x)
    return visual.pool(x[:, : x.shape[1] - m])
