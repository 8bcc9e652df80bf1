"""Zero-shot classification: prompt templates and classifier weights from class names.

A class's weight is the mean of its L2-normalised prompt embeddings over all templates,
L2-normalised again (CLIP's prompt ensembling).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

# The 80 prompt templates OpenAI used for ImageNet.
OPENAI_IMAGENET_TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
)
# The forward-selected subset reported to work slightly better for small models.
OPENAI_SELECTED_TEMPLATES: tuple[str, ...] = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)
TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "openai": OPENAI_IMAGENET_TEMPLATES,
    "openai7": OPENAI_SELECTED_TEMPLATES,
    "simple": ("a photo of a {}.",),
    "none": ("{}",),
}


def resolve_templates(spec: str | Sequence[str]) -> list[str]:
    """Templates from a set name (openai, openai7, simple, none), a text file (one per line) or a list."""
    if isinstance(spec, str):
        if spec in TEMPLATE_SETS:
            templates = list(TEMPLATE_SETS[spec])
        elif Path(spec).is_file():
            templates = [ln.strip() for ln in Path(spec).read_text().splitlines() if ln.strip()]
        else:
            raise ValueError(f"templates {spec!r}: not a template set ({', '.join(TEMPLATE_SETS)}) nor a file")
        source = spec
    else:
        templates, source = list(spec), "templates"
    if not templates:
        raise ValueError(f"{source}: no templates given")
    bad = [t for t in templates if t.count("{}") != 1]
    if bad:
        raise ValueError(f"{source}: each template needs exactly one '{{}}' for the class name; got {bad[:3]}")
    return templates


def parse_labels(labels: str | Sequence[str]) -> list[str]:
    """Class names from a comma-separated string, a file (one per line) or a list; blanks are refused."""
    if isinstance(labels, str):
        path = Path(labels)
        items = path.read_text().splitlines() if "," not in labels and path.is_file() else labels.split(",")
    else:
        items = list(labels)
    names = [str(x).strip() for x in items]
    names = [n for n in names if n]
    if len(names) < 1:
        raise ValueError("labels: expected at least one non-empty class name")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"labels: duplicate class names {dupes}")
    return names


@torch.no_grad()
def classifier_weights(
    model, tokenizer, classnames: Sequence[str], templates: Sequence[str], batch_size: int = 256
) -> torch.Tensor:
    """Class weights [C, embed_dim] (rows L2-normalised) by prompt ensembling."""
    device = model.device
    prompts = [t.format(c) for c in classnames for t in templates]
    feats = []
    for i in range(0, len(prompts), batch_size):
        tokens = tokenizer(prompts[i : i + batch_size]).to(device)
        feats.append(model.encode_text(tokens, normalize=True).float())
    per_prompt = torch.cat(feats).view(len(classnames), len(templates), -1)
    return F.normalize(per_prompt.mean(dim=1), dim=-1)


@dataclass
class ZeroShotClassifier:
    """Maps image features to class logits: `scale * cos(image, class weight) (+ bias)`."""

    classnames: list[str]
    weights: torch.Tensor
    logit_scale: float = 100.0
    logit_bias: float | None = None

    @classmethod
    def build(
        cls, model, tokenizer, classnames: Sequence[str], templates: str | Sequence[str] = "openai"
    ) -> "ZeroShotClassifier":
        names = parse_labels(classnames)
        weights = classifier_weights(model, tokenizer, names, resolve_templates(templates))
        bias = float(model.logit_bias.detach()) if model.logit_bias is not None else None
        return cls(names, weights, float(model.logit_scale.detach().exp()), bias)

    def logits(self, image_features: torch.Tensor) -> torch.Tensor:
        f = F.normalize(image_features.float(), dim=-1)
        out = self.logit_scale * f @ self.weights.to(f.device).t()
        return out + self.logit_bias if self.logit_bias is not None else out

    def probabilities(self, image_features: torch.Tensor) -> torch.Tensor:
        """Softmax over classes (sigmoid per class for models trained with a logit bias, i.e. SigLIP-style)."""
        logits = self.logits(image_features)
        return torch.sigmoid(logits) if self.logit_bias is not None else logits.softmax(dim=-1)
