"""The models of a run: the student (fresh, fine-tuned or resumed) with its tokenizer, and a frozen teacher."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import torch

from ..api import load
from ..config import ModelConfig, get_config
from ..data.pairs import open_pairs
from ..data.shapes import vocabulary
from ..model import CLIP
from ..tokenizer import BPETokenizer, WordTokenizer, load_tokenizer
from .config import TrainConfig

#: Texts both tokenizers must turn into the same ids for a teacher to read the student's tokens.
_PROBE_TEXTS = ("a red circle.", "two small blue squares above a green triangle!", "a photo of a dog, 42 cafés")


def _is_shapes_spec(spec: str | dict[str, Any]) -> bool:
    """Whether a data spec names the shapes world (`shapes[:N]`, the documented form)."""
    path = spec.get("path", "") if isinstance(spec, dict) else spec
    return str(path).startswith("shapes")


def build_tokenizer(cfg: TrainConfig, context_length: int) -> BPETokenizer | WordTokenizer:
    """CLIP's BPE, or a word tokenizer: the shapes vocabulary, else one built from the training captions."""
    if cfg.tokenizer == "bpe":
        return BPETokenizer.from_bpe_file(context_length=context_length)
    if all(_is_shapes_spec(s) for s in cfg.data):
        words = vocabulary(punctuation=True)
    else:
        sources = [open_pairs(s) for s in cfg.data]
        words = WordTokenizer.build([s.item(i)[1] for s in sources for i in range(min(len(s), 200_000))]).words
    return WordTokenizer(words, context_length=context_length)


def build_model_and_tokenizer(cfg: TrainConfig) -> tuple[CLIP, Any]:
    """A fresh model from a preset/config (+ tokenizer), or an existing checkpoint to fine-tune."""
    if cfg.init:
        model, _, tokenizer = load(cfg.init, device="cpu")
        return model.float(), tokenizer
    if Path(cfg.model).suffix == ".json":
        data = json.loads(Path(cfg.model).read_text())
        model_cfg = ModelConfig.from_dict(data.get("model", data))
    else:
        model_cfg = get_config(cfg.model)
    if cfg.model_overrides:
        model_cfg = model_cfg.replace(**cfg.model_overrides)
    if cfg.init_text:
        model, tokenizer = with_text_tower_of(cfg.init_text, model_cfg)
        if cfg.loss == "siglip" and not model.config.has_logit_bias:
            raise ValueError(f"init_text {cfg.init_text}: it has no logit bias, which the siglip loss needs")
        return model, tokenizer
    tokenizer = build_tokenizer(cfg, model_cfg.text.context_length)
    if cfg.tokenizer == "words":
        model_cfg = model_cfg.replace(
            text={"vocab_size": tokenizer.vocab_size, "eot_token_id": tokenizer.eot_token_id},
            tokenizer={"kind": "words"},
        )
    if cfg.loss == "siglip" and model_cfg.init_logit_bias is None:
        model_cfg = model_cfg.replace(init_logit_scale=math.log(10), init_logit_bias=-10.0)
    return CLIP(model_cfg), tokenizer


def with_text_tower_of(path: str, model_cfg: ModelConfig) -> tuple[CLIP, Any]:
    """A fresh image tower of `model_cfg` beside the text tower, tokenizer and temperature of checkpoint `path`.

    The model keeps the donor's text, embedding and preprocessing settings (so its captions embed exactly
    as the donor's do) and takes only the vision tower from `model_cfg`; every non-visual weight is the
    donor's. The image tower must project into the donor's embedding width.
    """
    donor, _, tokenizer = load(path, device="cpu")
    donor = donor.float()
    if model_cfg.embed_dim != donor.config.embed_dim:
        raise ValueError(
            f"init_text {path}: its embedding width is {donor.config.embed_dim}, the model's "
            f"{model_cfg.embed_dim}; the image tower must project into the text tower's space"
        )
    if model_cfg.vision.image_size != donor.config.vision.image_size:
        raise ValueError(
            f"init_text {path}: it reads {donor.config.vision.image_size}px images, the model "
            f"{model_cfg.vision.image_size}px; one preprocessing serves both towers"
        )
    model = CLIP(donor.config.replace(vision=dataclasses.asdict(model_cfg.vision), name=model_cfg.name))
    donor_state = {k: v for k, v in donor.state_dict().items() if not k.startswith("visual.")}
    missing = model.load_state_dict(donor_state, strict=False).missing_keys
    if any(not k.startswith("visual.") for k in missing):
        raise ValueError(f"init_text {path}: it lacks the text weights {sorted(missing)[:5]}")
    return model, tokenizer


def model_from_state(state: dict[str, Any]) -> tuple[CLIP, Any]:
    """The model and tokenizer a training checkpoint holds (what resuming continues from)."""
    model_cfg = ModelConfig.from_dict(state["model_config"])
    model = CLIP(model_cfg)
    model.load_state_dict(state["model"])
    ctx = model_cfg.text.context_length
    if state.get("tokenizer_words"):
        return model, WordTokenizer(list(state["tokenizer_words"]), context_length=ctx)
    if state.get("tokenizer_dir"):
        return model, load_tokenizer(state["tokenizer_dir"], context_length=ctx)
    return model, BPETokenizer.from_bpe_file(context_length=ctx)


def lock_towers(model: CLIP, lock_image: bool, lock_text: bool) -> None:
    """Freeze the image and/or text tower (LiT); the other parameters stay trainable."""
    for name, param in model.named_parameters():
        if name.startswith("visual."):
            param.requires_grad_(not lock_image)
        elif name.startswith("text."):
            param.requires_grad_(not lock_text)


def build_student(cfg: TrainConfig, state: dict[str, Any] | None, device: torch.device) -> tuple[CLIP, Any]:
    """The model to train and its tokenizer, on `device` in training mode, towers locked as configured."""
    model, tokenizer = model_from_state(state) if state is not None else build_model_and_tokenizer(cfg)
    model.to(device).train()
    lock_towers(model, cfg.lock_image, cfg.lock_text)
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    return model, tokenizer


def load_teacher(path: str, student: CLIP, tokenizer: Any, device: torch.device) -> CLIP:
    """The distillation teacher: `clipforge.load`ed, fp32, eval mode, every parameter frozen.

    It reads the student's batches, so it must share the student's tokenizer (same ids) and image
    tensor format (size, mean, std); its width and depth may differ (only similarities are compared).
    """
    teacher, _, teacher_tokenizer = load(path, device=device)
    teacher = teacher.float().eval().requires_grad_(False)
    if not torch.equal(teacher_tokenizer(list(_PROBE_TEXTS)), tokenizer(list(_PROBE_TEXTS))) or (
        teacher_tokenizer.vocab_size != tokenizer.vocab_size
    ):
        raise ValueError(f"teacher {path}: its tokenizer differs from the student's; distillation needs the same one")
    ours, theirs = student.config.preprocess, teacher.config.preprocess
    if (ours.image_size, ours.mean, ours.std) != (theirs.image_size, theirs.mean, theirs.std):
        raise ValueError(
            f"teacher {path}: images of {theirs.image_size}px, mean {theirs.mean}, std {theirs.std} differ "
            f"from the student's ({ours.image_size}px, {ours.mean}, {ours.std}); distillation needs the same"
        )
    return teacher
