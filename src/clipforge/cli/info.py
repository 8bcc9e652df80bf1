"""`clipforge info [CHECKPOINT | default | default-rn | --model CHECKPOINT]`: what a checkpoint is
(including the words a closed-vocabulary tokenizer knows), or the presets and the checkpoint families
clipforge reads with what each supports."""

from __future__ import annotations

import argparse
import json
import typing
from typing import Any

from ..api import EMBEDDED_MODELS, resolve_model_path, tokenizer_for
from ..checkpoints import Checkpoint, read_checkpoint
from ..checkpoints.hf import is_siglip_layout
from ..config import Activation, get_config, list_configs
from ..fast import engine_refusal
from ..tokenizer import HFTokenizer, MissingTokenizer, WordTokenizer

HELP = (
    "describe a checkpoint and its tokenizer ('default', 'default-rn': the embedded models), or list the presets "
    "and the checkpoint families"
)

#: family → (how it is read, export formats, what runs on it); docs/interop.md has the same table
FAMILIES = {
    "OpenAI CLIP": ("ViT and ResNet .pt archives and state dicts", "native, hf (ViT), openclip", "every command"),
    "OpenCLIP": ("open_clip_config.json with its own towers; others refused by name", "native, hf, openclip",
                 "every command"),
    "HF CLIPModel": ("config.json + model.safetensors", "native, hf, openclip", "every command"),
    "HF SiglipModel": ("config.json + model.safetensors, tokenizer from its spiece.model", "native, hf",
                       "every command on the plain model; no fast engine, no dense readouts"),
    "native": ("clipforge config.json + model.safetensors", "native, hf, openclip as the architecture allows",
               "every command"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint",
        nargs="?",
        help=f"a checkpoint path, or an embedded model ({', '.join(EMBEDDED_MODELS)}) (omit to list presets)",
    )
    parser.add_argument("--model", default=None, help="the checkpoint, as for the other commands (same as CHECKPOINT)")
    parser.add_argument("--config", default=None, help="architecture override: preset name or config JSON")
    parser.add_argument(
        "--activation", choices=typing.get_args(Activation), default=None, help="activation of bare state dicts"
    )


def run(args: argparse.Namespace) -> int:

    if args.checkpoint is not None and args.model is not None:
        raise ValueError("give the checkpoint either as CHECKPOINT or with --model, not both")
    target = args.checkpoint if args.checkpoint is not None else args.model
    if target is None:
        for name in list_configs():
            cfg = get_config(name)
            v = cfg.vision
            arch = f"ResNet {list(v.layers)}" if isinstance(v.layers, tuple) else f"ViT patch {v.patch_size}"
            print(f"{name:14s} {arch:22s} image {v.image_size:3d}  width {v.width:4d}  embed {cfg.embed_dim}")
        print("\ncheckpoint families (read; export to; runs):")
        for family, (read, export, runs) in FAMILIES.items():
            print(f"  {family:15s} {read}; {export}; {runs}")
        return 0
    ckpt = read_checkpoint(resolve_model_path(target), config=args.config, activation=args.activation)
    n_params = sum(t.numel() for t in ckpt.state_dict.values())
    family = "siglip" if is_siglip_layout(ckpt.config) else "clip"
    info: dict[str, Any] = {"format": ckpt.source_format, "family": family, "parameters": n_params}
    info["fast_engines"] = engine_refusal(ckpt.config) or "yes"
    info["config"] = ckpt.config.to_dict()
    info["tokenizer"] = _describe_tokenizer(ckpt)
    print(json.dumps(info, indent=2))
    return 0


def _describe_tokenizer(ckpt: Checkpoint) -> dict[str, Any]:
    """Kind, vocabulary size and (for a closed vocabulary) the words the model knows."""
    try:
        tokenizer = tokenizer_for(ckpt)
    except FileNotFoundError as exc:
        return {"kind": ckpt.config.tokenizer.get("kind", "bpe"), "error": str(exc)}
    if isinstance(tokenizer, MissingTokenizer):
        return {"kind": "hf-files", "error": tokenizer.reason}
    if isinstance(tokenizer, HFTokenizer):
        return {"kind": "hf", "vocab_size": tokenizer.vocab_size, "files": str(tokenizer.directory),
                "note": "the checkpoint's own Hugging Face tokenizer (subword: encodes any text)"}
    if isinstance(tokenizer, WordTokenizer):
        return {
            "kind": "words",
            "vocab_size": tokenizer.vocab_size,
            "note": "closed vocabulary: any other word becomes one unknown token",
            "words": list(tokenizer.words),
        }
    return {"kind": "bpe", "vocab_size": tokenizer.vocab_size, "note": "byte-level BPE: encodes any text"}
