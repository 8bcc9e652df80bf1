"""Arguments shared by several commands (model selection, precision, backend, device)."""

from __future__ import annotations

import argparse
import typing

from ..api import load
from ..config import Activation
from ..runtime import BACKENDS, PRECISIONS
from ..runtime.policy import MODEL_DTYPES


def add_model_arguments(
    parser: argparse.ArgumentParser,
    with_model: bool = True,
    runtime: bool = True,
    engine: bool = False,
    architecture: bool = True,
) -> None:
    """--model/--config/--activation; with `runtime` also --device and --precision; with `engine` the
    inference-engine choices (--precision int8/auto, --backend) of commands that only embed. Commands
    whose model is recorded elsewhere (an index's) leave out --config/--activation (`architecture=False`)."""
    if with_model:
        parser.add_argument(
            "--model",
            default=None,
            help="checkpoint: native dir, OpenAI .pt, OpenCLIP file/dir or HF dir (default: embedded model)",
        )
    if architecture:
        parser.add_argument("--config", default=None, help="architecture override: preset name or config JSON")
        parser.add_argument(
            "--activation",
            choices=typing.get_args(Activation),
            default=None,
            help="activation for bare state dicts that do not record it (OpenAI weights: quick_gelu)",
        )
    if not runtime:
        return
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    if engine:
        parser.add_argument(
            "--precision",
            choices=PRECISIONS,
            default="auto",
            help="auto (default): fp32 on the CPU (features within 1e-4 of the reference), bf16 on CUDA; "
            "bf16 and int8 (dynamic quantisation, CPU) trade accuracy for speed",
        )
        parser.add_argument(
            "--backend",
            choices=BACKENDS,
            default="auto",
            help="auto (default): the prepared torch engine on the CPU, the plain model on CUDA; "
            "onnx: ONNX Runtime (fp32/int8); none: the plain model",
        )
    else:
        parser.add_argument(
            "--precision", choices=list(MODEL_DTYPES), default="fp32", help="model weights dtype (default fp32)"
        )


def load_from_args(args: argparse.Namespace, path: str | None = None):
    """Load `path` (or --model) with the command's options; commands without --device load on the CPU."""

    return load(
        path or args.model,
        device=getattr(args, "device", "cpu"),
        precision=getattr(args, "precision", "fp32"),
        config=args.config,
        activation=args.activation,
        backend=getattr(args, "backend", None),
    )
