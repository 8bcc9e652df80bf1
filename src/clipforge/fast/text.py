"""Fast text tower: only real tokens are computed.

Attention is causal, so tokens after a caption's EOT cannot change its feature. The reference model
already cuts the batch to its longest caption; here every caption is cut to its own length and the
kept tokens are packed into one [T, width] matrix for all linears (T = sum of lengths). Attention
scatters q|k|v back to a padded [B, Lmax] grid (causality keeps the padding out of every real
query) and gathers the result. In the last block only the EOT rows are needed after attention.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..model.clip import TextTransformer, eot_positions
from .blocks import FastBlock, LinearSpec, merge_heads, split_heads


@dataclass
class Packing:
    """Where the kept tokens of a [B, Lmax] batch live in the packed [T] order."""

    batch: int
    lmax: int
    index: torch.Tensor | None  # flat positions in [B·Lmax] of the packed rows; None when nothing is cut
    eot: torch.Tensor  # EOT position of each caption in its row
    eot_rows: torch.Tensor  # packed row of each caption's EOT token
    key_mask: torch.Tensor  # [B, 1, 1, Lmax] keys each EOT query may see

    @classmethod
    def from_lengths(cls, lengths: torch.Tensor) -> "Packing":
        b, lmax = lengths.shape[0], int(lengths.max())
        pos = torch.arange(lmax, device=lengths.device)
        keep = pos[None, :] < lengths[:, None]
        index = None if bool(keep.all()) else keep.flatten().nonzero().squeeze(1)
        eot_rows = torch.cumsum(lengths, 0) - 1
        return cls(b, lmax, index, lengths - 1, eot_rows, keep[:, None, None, :])

    def pad(self, rows: torch.Tensor) -> torch.Tensor:
        """[T, C] → [B, Lmax, C], zeros where there is no token."""
        c = rows.shape[-1]
        if self.index is None:
            return rows.view(self.batch, self.lmax, c)
        grid = rows.new_zeros(self.batch * self.lmax, c)
        grid.index_copy_(0, self.index, rows)
        return grid.view(self.batch, self.lmax, c)

    def unpad(self, grid: torch.Tensor) -> torch.Tensor:
        """[B, Lmax, C] → [T, C]."""
        flat = grid.reshape(self.batch * self.lmax, grid.shape[-1])
        return flat if self.index is None else flat.index_select(0, self.index)


class FastText:
    """Text tower over packed tokens with prepared linears."""

    def __init__(self, text: TextTransformer, spec: LinearSpec, residual_dtype: torch.dtype) -> None:
        self.cfg = text.cfg
        self.dtype = dtype = residual_dtype
        self.compute_dtype = spec.dtype
        self.width = text.cfg.width
        self.token_embedding = text.token_embedding.weight.detach().to(dtype)
        self.positional_embedding = text.positional_embedding.detach().to(dtype)
        self.blocks = [FastBlock(b, spec, residual_dtype) for b in text.transformer.blocks]
        ln = text.ln_final
        self.ln_final = (ln.weight.detach().to(dtype), ln.bias.detach().to(dtype), ln.eps)
        self.proj = spec(text.text_projection.detach().t(), None)

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 2:
            raise ValueError(f"expected token ids [B, L], got shape {list(tokens.shape)}")
        if tokens.shape[1] > self.cfg.context_length:
            raise ValueError(
                f"text tokens have length {tokens.shape[1]}, longer than the model's context {self.cfg.context_length}"
            )
        if tokens.shape[0] == 0:
            return torch.zeros(0, self.proj.out_features, device=tokens.device)
        pack = Packing.from_lengths(eot_positions(tokens, self.cfg) + 1)
        x = self._embed(tokens[:, : pack.lmax], pack)

        def attend(qkv: torch.Tensor, heads: int) -> torch.Tensor:
            q, k, v = split_heads(pack.pad(qkv), heads)
            return pack.unpad(merge_heads(F.scaled_dot_product_attention(q, k, v, is_causal=True)))

        for block in self.blocks[:-1]:
            x = block(x, functools.partial(attend, heads=block.heads))
        last = self.blocks[-1]
        q, k, v = split_heads(pack.pad(last.attention_input(x)), last.heads)
        b = pack.batch
        q_eot = q[torch.arange(b, device=q.device), :, pack.eot].unsqueeze(2)
        out = F.scaled_dot_product_attention(q_eot, k, v, attn_mask=pack.key_mask)
        x = last.mlp(last.attend(x.index_select(0, pack.eot_rows), merge_heads(out)[:, 0]))
        return self.proj(F.layer_norm(x, (self.width,), *self.ln_final).to(self.compute_dtype)).float()

    def _embed(self, tokens: torch.Tensor, pack: Packing) -> torch.Tensor:
        b, n = tokens.shape
        x = F.embedding(tokens, self.token_embedding) + self.positional_embedding[:n]
        return pack.unpad(x)
