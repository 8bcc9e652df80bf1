"""The CLIP model: an image tower, a causal text tower, projections and a learnable logit scale."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig, TextConfig
from .layers import LayerNorm, Transformer
from .vision import ModifiedResNet, VisionTransformer, build_vision_tower


def eot_positions(tokens: torch.Tensor, cfg: TextConfig) -> torch.Tensor:
    """Index of the pooled (end-of-text) token per row, following `cfg.pooling`."""
    if cfg.pooling == "argmax":
        return tokens.argmax(dim=-1)
    if cfg.pooling == "last":
        return torch.full(tokens.shape[:1], tokens.shape[1] - 1, dtype=torch.long, device=tokens.device)
    is_eot = tokens == cfg.eot_token_id
    first = is_eot.int().argmax(dim=-1)  # 0 where a row has no EOT: OpenCLIP's "eos" pooling
    return first if cfg.pooling == "eos" else torch.where(is_eot.any(dim=-1), first, tokens.argmax(dim=-1))


class TextTransformer(nn.Module):
    """Token + position embeddings, (causal) pre-LN transformer, final LN, feature at the pooled token."""

    def __init__(self, cfg: TextConfig, embed_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.transformer = Transformer(cfg.width, cfg.layers, cfg.heads, cfg.mlp_ratio, cfg.act, cfg.layer_norm_eps)
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.context_length, cfg.width))
        self.ln_final = LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.text_projection = nn.Parameter(torch.empty(cfg.width, embed_dim))
        self.text_projection_bias = nn.Parameter(torch.zeros(embed_dim)) if cfg.proj_bias else None
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.text_projection, std=cfg.width**-0.5)
        self.transformer.init_weights()

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        n = tokens.shape[1]
        if n > self.cfg.context_length:
            raise ValueError(f"text tokens have length {n}, longer than the model's context {self.cfg.context_length}")
        return self.token_embedding(tokens) + self.positional_embedding[:n].to(self.token_embedding.weight.dtype)

    def forward_hidden(self, tokens: torch.Tensor, embedded: torch.Tensor | None = None) -> torch.Tensor:
        """Final-LN hidden states [B, L, width]; `embedded` replaces the token+position embedding (prompt learning)."""
        x = self.embed(tokens) if embedded is None else embedded
        return self.ln_final(self.transformer(x, causal=self.cfg.causal))

    def forward(self, tokens: torch.Tensor, embedded: torch.Tensor | None = None) -> torch.Tensor:
        eot = eot_positions(tokens, self.cfg)
        if embedded is None and self.cfg.causal:
            # Attention is causal, so positions after the last EOT cannot change any EOT feature:
            # cut the batch to its longest sequence and spend nothing on padding.
            tokens = tokens[:, : int(eot.max()) + 1]
        x = self.forward_hidden(tokens, embedded)
        return self.project(x[torch.arange(x.shape[0], device=x.device), eot])

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled width → embedding space (`text_projection`, plus its bias where the model has one)."""
        out = pooled @ self.text_projection
        return out if self.text_projection_bias is None else out + self.text_projection_bias


@dataclass
class CLIPOutput:
    """What a CLIP forward pass returns. Features are L2-normalised; logits are `scale * cos + bias`."""

    image_features: torch.Tensor
    text_features: torch.Tensor
    logits_per_image: torch.Tensor
    logits_per_text: torch.Tensor
    logit_scale: torch.Tensor
    logit_bias: torch.Tensor | None


def weights_fingerprint(config: dict, state: dict[str, torch.Tensor]) -> str:
    """Hash of a config dict and tensors (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, t in sorted(state.items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()[:24]


class CLIP(nn.Module):
    """CLIP model. Native parameter names: `visual.*` (OpenAI layout), `text.*`, `logit_scale`, `logit_bias`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.visual: VisionTransformer | ModifiedResNet = build_vision_tower(config.vision, config.embed_dim)
        self.text = TextTransformer(config.text, config.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.init_logit_scale)))
        self.logit_bias: nn.Parameter | None = None
        if config.init_logit_bias is not None:
            self.logit_bias = nn.Parameter(torch.tensor(float(config.init_logit_bias)))

    @property
    def dtype(self) -> torch.dtype:
        return self.logit_scale.dtype

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def runtime(self) -> str:
        """How this model computes (part of feature-cache keys): "plain model <dtype>"."""
        return f"plain model {str(self.dtype).replace('torch.', '')}"

    def fingerprint(self) -> str:
        """Hash of the config and every parameter/buffer: identifies the weights in caches and saved adapters."""
        return weights_fingerprint(self.config.identity(), self.state_dict())

    def encode_image(self, pixels: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Image embeddings [B, embed_dim] from preprocessed pixels [B, 3, H, W]."""
        feats = self.visual(pixels)
        return F.normalize(feats, dim=-1) if normalize else feats

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Text embeddings [B, embed_dim] from token ids [B, L] (L <= context length)."""
        feats = self.text(tokens)
        return F.normalize(feats, dim=-1) if normalize else feats

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """`exp(logit_scale) * cos + bias` for normalised features: [n_images, n_texts]."""
        out = self.logit_scale.exp() * image_features @ text_features.t()
        return out + self.logit_bias if self.logit_bias is not None else out

    def forward(self, pixels: torch.Tensor, tokens: torch.Tensor) -> CLIPOutput:
        img = self.encode_image(pixels, normalize=True)
        txt = self.encode_text(tokens, normalize=True)
        logits = self.logits(img, txt)
        return CLIPOutput(img, txt, logits, logits.t(), self.logit_scale.exp(), self.logit_bias)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.text.transformer.grad_checkpointing = enable
        if isinstance(self.visual, VisionTransformer):
            self.visual.transformer.grad_checkpointing = enable
