"""`clipforge info [CHECKPOINT]`: what a checkpoint is, or the list of presets."""

from __future__ import annotations

import argparse
import json

from ..checkpoints import read_checkpoint
from ..config import get_config, list_configs

HELP = "describe a checkpoint, or list the model presets"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", help="a checkpoint path (omit to list presets)")
    parser.add_argument("--config", default=None, help="architecture override: preset name or config JSON")
    parser.add_argument("--activation", choices=["quick_gelu", "gelu"], default=None)


def run(args: argparse.Namespace) -> int:

    if args.checkpoint is None:
        for name in list_configs():
            cfg = get_config(name)
            v = cfg.vision
            arch = f"ResNet {list(v.layers)}" if isinstance(v.layers, tuple) else f"ViT patch {v.patch_size}"
            print(f"{name:14s} {arch:22s} image {v.image_size:3d}  width {v.width:4d}  embed {cfg.embed_dim}")
        return 0
    ckpt = read_checkpoint(args.checkpoint, config=args.config, activation=args.activation)
    n_params = sum(t.numel() for t in ckpt.state_dict.values())
    print(json.dumps({"format": ckpt.source_format, "parameters": n_params, "config": ckpt.config.to_dict()}, indent=2))
    return 0
