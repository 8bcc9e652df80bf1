"""The towers as plain nn.Modules built from stock torch ops, for ONNX export and `torch.compile`.

Same numbers as `model.encode_image` / `model.encode_text`, minus work the output never sees: the
last transformer block computes attention, its output projection and the MLP only at the pooled
row (the class token for images, each caption's EOT token for texts).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..model import CLIP
from ..model.clip import eot_positions
from ..model.layers import ResidualBlock
from ..model.vision import VisionTransformer


def block_at(block: ResidualBlock, x: torch.Tensor, rows: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """`block(x)` evaluated only at one row per sequence: x [B, L, D], rows [B] → [B, D].

    `key_mask` [B, 1, 1, L] (True = may attend) restricts the keys, e.g. to causal ones.
    """
    b, n, d = x.shape
    heads = block.attn.heads
    qkv = F.linear(block.ln_1(x), block.attn.in_proj_weight, block.attn.in_proj_bias)
    qkv = qkv.view(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    batch = torch.arange(b, device=x.device)
    q = qkv[0][batch, :, rows].unsqueeze(2)  # [B, H, 1, Dh]
    out = F.scaled_dot_product_attention(q, qkv[1], qkv[2], attn_mask=key_mask)
    y = x[batch, rows] + block.attn.out_proj(out.reshape(b, d))
    return y + block.mlp(block.ln_2(y))


class ImageGraph(nn.Module):
    """`model.visual` as a module; for a class-token ViT the last block runs at the class token only."""

    def __init__(self, model: CLIP) -> None:
        super().__init__()
        self.visual = model.visual

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        v = self.visual
        if not isinstance(v, VisionTransformer):
            return v(pixels).float()
        x = v.tokens(pixels)
        blocks = v.transformer.blocks
        if v.cfg.pool != "cls":  # every patch token is pooled: the last block runs in full
            return v.pool(v.transformer(x)).float()
        for block in blocks[:-1]:
            x = block(x)
        cls = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        x = block_at(blocks[-1], x, cls, None)
        return v.project(v.ln_post(x)).float()


class TextGraph(nn.Module):
    """`model.text` as a module over tokens already cut to the batch's longest caption; the last
    block runs at each caption's EOT token only."""

    def __init__(self, model: CLIP) -> None:
        super().__init__()
        self.text = model.text

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = self.text
        eot = eot_positions(tokens, t.cfg)
        n = tokens.shape[1]
        x = t.token_embedding(tokens) + t.positional_embedding[:n].to(t.token_embedding.weight.dtype)
        blocks = t.transformer.blocks
        for block in blocks[:-1]:
            x = block(x, causal=True)
        keys = torch.arange(n, device=tokens.device)[None, :] <= eot[:, None]
        x = block_at(blocks[-1], x, eot, keys[:, None, None, :])
        return (t.ln_final(x) @ t.text_projection).float()


def cut_to_longest(tokens: torch.Tensor, model_cfg) -> torch.Tensor:
    """Drop columns after the batch's last pooled token (they cannot change any feature)."""
    if tokens.shape[0] == 0:
        return tokens
    return tokens[:, : int(eot_positions(tokens, model_cfg.text).max()) + 1]
