"""AnomalyCLIP-style object-agnostic prompts (Zhou et al., ICLR 2024): learn what "normal" and
"abnormal" look like once, on annotated auxiliary categories, then detect anomalies zero-shot on
objects never seen.

Two learnable prompts, `[V1 … Vn] object.` and `[W1 … Wn] damaged object.` (context vectors in
the text tower's token-embedding space, `clipforge.adapt.prompts`), replace WinCLIP's hand-made
prompt ensemble; everything else is WinCLIP's scoring (whole image, windows at two scales, harmonic
aggregation). Training keeps both towers frozen and runs only the text tower: the auxiliary
images' views are embedded once, then the contexts are fitted with a cross-entropy on the whole
image's label and a focal loss on every window's and dense patch's label (anomalous where the
defect mask covers at least `cover` of it), at WinCLIP's temperature. What is left out of the
paper's recipe: the learnable tokens inside the text tower's layers and the image tower's
diagonally prominent attention (DPAM), which needs a ViT.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from ..adapt.prompts import PromptTokens, encode_prompts, init_context
from ..model.clip import CLIP
from .base import ANOMALY_METHODS
from .features import window_boxes
from .winclip import WinCLIP

PROMPT_OBJECTS = ("object", "damaged object")


def window_cover(cells: torch.Tensor, k: int, stride: int) -> torch.Tensor:
    """[N, n_windows]: the covered fraction of each k×k window, from per-cell fractions [N, grid, grid]."""
    grid = cells.shape[-1]
    return torch.stack([cells[:, t : t + k, x : x + k].mean(dim=(1, 2)) for t, x in window_boxes(grid, k, stride)], 1)


def focal_loss(p_anomalous: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Binary focal loss (Lin et al.) of anomalous probabilities against 0/1 targets."""
    p = p_anomalous.clamp(1e-6, 1 - 1e-6)
    pt = torch.where(target > 0, p, 1 - p)
    return (-((1 - pt) ** gamma) * pt.log()).mean()


@ANOMALY_METHODS.register("anomalyclip")
class AnomalyCLIP(WinCLIP):
    """Learnt object-agnostic normal/abnormal prompts with WinCLIP's scoring (see the module doc)."""

    name = "anomalyclip"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        category: str = "object",
        *,
        n_ctx: int = 8,
        trained_on: Sequence[str] = (),
        train_steps: int = 0,
        **options: Any,
    ) -> None:
        self._n_ctx = n_ctx
        super().__init__(model, tokenizer, category, **options)
        self.options.update(n_ctx=n_ctx, trained_on=list(trained_on), train_steps=train_steps)

    def _text_embeddings(self) -> torch.Tensor:
        if "prompt_ctx" not in self.memory:
            self.prompt_tokens = PromptTokens(self.tokenizer, PROMPT_OBJECTS, self._n_ctx, "end")
            with torch.random.fork_rng():
                torch.manual_seed(0)
                ctx = init_context(self.model.text, self.tokenizer, self._n_ctx, None, classes=2)
            self.memory["prompt_ctx"] = ctx.to(self.model.device)
        with torch.no_grad():
            features = encode_prompts(
                self.model.text, self.prompt_tokens.tokens, self.prompt_tokens.slots, self.memory["prompt_ctx"]
            )
        return F.normalize(features.float(), dim=-1)

    @property
    def trained(self) -> bool:
        return bool(self.options.get("trained_on"))

    def _loaded(self) -> None:
        self.text = self._text_embeddings()

    def train_prompts(
        self,
        images: Sequence[Image.Image | None],
        masks: Sequence[np.ndarray],
        steps: int = 300,
        lr: float = 2e-3,
        cover: float = 0.05,
        categories: Sequence[str] = (),
        progress: bool = True,
        views: dict[str, torch.Tensor] | None = None,
    ) -> list[float]:
        """Fit the two prompts' contexts on annotated images (masks all-False for normal images);
        `views`, if given, are `self.views(images)` computed before (the images are then not read,
        and may be None)."""
        if len(images) != len(masks) or not masks:
            raise ValueError(f"train_prompts needs as many masks as images (got {len(images)} and {len(masks)})")
        if self.few_shot:
            raise ValueError("train the prompts before fitting normal shots (the shots' memory would be kept stale)")
        o = self.options
        if views is None:
            if any(image is None for image in images):
                raise ValueError("train_prompts needs the images, or their views (views=)")
            views = self.views([image for image in images if image is not None])
        h, w = views["patch"].shape[1:3]
        rows = [torch.from_numpy(np.asarray(m, dtype=bool))[None, None].float() for m in masks]  # any sizes
        cells = torch.cat([F.adaptive_avg_pool2d(m, o["grid"]) for m in rows])[:, 0]
        patch_cover = torch.cat([F.adaptive_avg_pool2d(m, (h, w)) for m in rows])[:, 0]
        device = self.memory["prompt_ctx"].device
        views = {k: v.to(device) for k, v in views.items()}
        labels = torch.tensor([bool(np.asarray(m).any()) for m in masks], dtype=torch.long, device=device)
        window_targets = {
            k: (window_cover(cells, k, o["window_stride"]) >= cover).float().to(device) for k in o["scales"]
        }
        patch_targets = (patch_cover >= cover).float().to(device)
        ctx = torch.nn.Parameter(self.memory["prompt_ctx"].detach().float().clone())
        optimiser = torch.optim.AdamW([ctx], lr=lr, weight_decay=0.0)
        model: CLIP = self.model
        frozen = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        losses = []
        try:
            for _ in tqdm(range(steps), desc="training prompts", disable=not progress):
                text = F.normalize(
                    encode_prompts(model.text, self.prompt_tokens.tokens, self.prompt_tokens.slots, ctx).float(), dim=-1
                )

                def prob(features: torch.Tensor) -> torch.Tensor:
                    return (features @ text.T / o["temperature"]).softmax(dim=-1)[..., 1]

                logits = views["image"] @ text.T / o["temperature"]
                loss = F.cross_entropy(logits, labels)
                for k in o["scales"]:
                    loss = loss + focal_loss(prob(views[f"window_{k}"]), window_targets[k])
                loss = loss + focal_loss(prob(views["patch"]), patch_targets)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                losses.append(float(loss.detach()))
        finally:
            for p, flag in zip(model.parameters(), frozen):
                p.requires_grad_(flag)
        self.memory["prompt_ctx"] = ctx.detach()
        self.options["trained_on"] = list(categories) or ["(unnamed)"]
        self.options["train_steps"] = steps
        self.text = self._text_embeddings()
        return losses
