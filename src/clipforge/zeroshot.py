"""Zero-shot classification: prompt templates and classifier weights from class names.

A class's weight is the mean of its L2-normalised prompt embeddings over all templates,
L2-normalised again (CLIP's prompt ensembling).

Class names and text queries are checked against the tokenizer first (`check_labels`,
`check_queries`): a closed-vocabulary tokenizer (the embedded default model's) turns every word it
does not know into one unknown token. Unknown words give an `UnknownWordsWarning`; labels that
become identical token sequences, which no classifier can tell apart, are refused with a ValueError.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from .data.embedding import embed_texts
from .tokenizer import Tokenizer

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


class UnknownWordsWarning(UserWarning):
    """Some words of the class names or queries are not in the model's vocabulary: the model sees each
    as one unknown token, so they carry no meaning. Filter it, or escalate it with
    `warnings.simplefilter("error", UnknownWordsWarning)`."""


VOCABULARY_HINT = (
    "See the words the model knows with `clipforge info --model MODEL` (`clipforge info default` for the "
    "embedded default model, which knows only the shapes world's words: photos need a real checkpoint)."
)


def _quoted(items: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(repr(x) for x in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _unknown_words(tokenizer: Tokenizer, texts: Sequence[str]) -> list[str]:
    return list(tokenizer.unknown_words(list(texts)))


def _unknown_words_notes(tokenizer: Tokenizer, texts: list[str], what: str, consequence: str) -> list[str]:
    """[] if the tokenizer knows every word of `texts`, else one message naming the unknown words,
    the texts holding them (`what`: "labels", "queries") and what follows for the result."""
    unknown = _unknown_words(tokenizer, texts)
    if not unknown:
        return []
    affected = [t for t in texts if _unknown_words(tokenizer, [t])]
    return [
        f"the model's vocabulary lacks {len(unknown)} word(s) of the {what}: {_quoted(unknown)} (in the "
        f"{what} {_quoted(affected)}); the model sees each as one unknown token, which carries no meaning, "
        f"so {consequence}. {VOCABULARY_HINT}"
    ]


def check_labels(tokenizer: Tokenizer, classnames: Sequence[str]) -> list[str]:
    """Problems of `classnames` for this tokenizer, as warning messages ([] if none).

    Raises ValueError if two or more labels tokenize to identical sequences (e.g. "cat,dog,car" with
    a vocabulary that knows none of them: each is one unknown token), since the classifier would give
    them identical scores. Nothing is emitted; `warn_unknown_words` does that.
    """
    names = list(classnames)
    groups: dict[bytes, list[str]] = {}
    for name, row in zip(names, tokenizer(names, truncate="eot")):
        groups.setdefault(row.numpy().tobytes(), []).append(name)
    same = [g for g in groups.values() if len(g) > 1]
    if same:
        sets = "; ".join(_quoted(g) for g in same)
        unknown = _unknown_words(tokenizer, [n for g in same for n in g])
        why = (
            f"the words {_quoted(unknown)} are not in the model's vocabulary and each becomes the same one "
            "unknown token"
            if unknown
            else "the tokenizer normalises them to the same words (lower-case, whitespace, punctuation)"
        )
        raise ValueError(
            f"labels {sets} become identical token sequences, so the classifier cannot tell them apart: "
            f"{why}. Use class names the model knows. {VOCABULARY_HINT}"
        )
    return _unknown_words_notes(tokenizer, names, "labels", "the scores of those labels may be meaningless")


def check_queries(tokenizer: Tokenizer, texts: Sequence[str]) -> list[str]:
    """Warning messages about words of text queries this tokenizer does not know ([] if none)."""
    return _unknown_words_notes(tokenizer, list(texts), "queries", "the results ignore what those words mean")


def warn_unknown_words(messages: Sequence[str], stacklevel: int = 2) -> None:
    """Emit each message as an `UnknownWordsWarning` (pointing `stacklevel` frames above the caller)."""
    for message in messages:
        warnings.warn(message, UnknownWordsWarning, stacklevel=stacklevel + 1)


@torch.no_grad()
def classifier_weights(
    model,
    tokenizer,
    classnames: Sequence[str],
    templates: Sequence[str],
    batch_size: int = 256,
    check: bool = True,
) -> torch.Tensor:
    """Class weights [C, embed_dim] (rows L2-normalised) by prompt ensembling.

    With `check` (the default) the class names are checked first (`check_labels`): unknown words give
    an `UnknownWordsWarning`, labels the tokenizer cannot tell apart a ValueError.
    """
    if check:
        warn_unknown_words(check_labels(tokenizer, classnames), stacklevel=3)
    prompts = [t.format(c) for c in classnames for t in templates]
    feats = embed_texts(model, tokenizer, prompts, batch_size=batch_size, normalize=True, progress=False)
    per_prompt = torch.from_numpy(feats).to(model.device).view(len(classnames), len(templates), -1)
    return F.normalize(per_prompt.mean(dim=1), dim=-1)


@dataclass
class ZeroShotClassifier:
    """Maps image features to class logits: `scale * cos(image, class weight) (+ bias)`."""

    classnames: list[str]
    weights: torch.Tensor
    logit_scale: float = 100.0
    logit_bias: float | None = None
    warnings: list[str] = field(default_factory=list)  # what `check_labels` found when it was built

    @classmethod
    def build(
        cls,
        model,
        tokenizer,
        classnames: Sequence[str],
        templates: str | Sequence[str] = "openai",
        warn: bool = True,
    ) -> "ZeroShotClassifier":
        """Classifier for `classnames` (see `parse_labels`). Labels with unknown words are kept in
        `.warnings` and, with `warn`, emitted as `UnknownWordsWarning`s; indistinguishable labels
        raise ValueError before any text is encoded."""
        names = parse_labels(classnames)
        prompts = resolve_templates(templates)
        notes = check_labels(tokenizer, names)
        if warn:
            warn_unknown_words(notes)
        weights = classifier_weights(model, tokenizer, names, prompts, check=False)
        bias = float(model.logit_bias.detach()) if model.logit_bias is not None else None
        return cls(names, weights, float(model.logit_scale.detach().exp()), bias, notes)

    def logits(self, image_features: torch.Tensor) -> torch.Tensor:
        f = F.normalize(image_features.float(), dim=-1)
        out = self.logit_scale * f @ self.weights.to(f.device).t()
        return out + self.logit_bias if self.logit_bias is not None else out

    def probabilities(self, image_features: torch.Tensor) -> torch.Tensor:
        """Softmax over classes (sigmoid per class for models trained with a logit bias, i.e. SigLIP-style)."""
        logits = self.logits(image_features)
        return torch.sigmoid(logits) if self.logit_bias is not None else logits.softmax(dim=-1)
