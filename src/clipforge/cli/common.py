"""Arguments shared by several commands (model selection, precision, device)."""

from __future__ import annotations

import argparse


def add_model_arguments(parser: argparse.ArgumentParser, with_model: bool = True, runtime: bool = True) -> None:
    if with_model:
        parser.add_argument(
            "--model",
            default=None,
            help="checkpoint: native dir, OpenAI .pt, OpenCLIP file/dir or HF dir (default: embedded model)",
        )
    parser.add_argument("--config", default=None, help="architecture override: preset name or config JSON")
    parser.add_argument(
        "--activation",
        choices=["quick_gelu", "gelu"],
        default=None,
        help="activation for bare state dicts that do not record it (OpenAI weights: quick_gelu)",
    )
    if runtime:
        parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
        parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")


def load_from_args(args: argparse.Namespace, path: str | None = None):
    """Load `path` (or --model) with the command's options; commands without --device load on the CPU."""
    from ..api import load

    return load(
        path or args.model,
        device=getattr(args, "device", "cpu"),
        precision=getattr(args, "precision", "fp32"),
        config=args.config,
        activation=args.activation,
    )
