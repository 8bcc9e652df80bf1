"""`clipforge train`: contrastive training / fine-tuning; run under torchrun for several processes.

Flags are generated from `TrainConfig`'s fields (one source of truth); `--train-config FILE.json` gives a
base config that flags override. A config file from an older version holding the removed
`tensorboard` field is read with a warning (the field is dropped).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
import warnings

from ..losses import LOSSES
from ..train import TrainConfig, train

HELP = "train or fine-tune a CLIP model (torchrun --nproc_per_node N -m clipforge train ... for DDP)"
FIELD_HELP = {
    "out_dir": "run directory: train_config.json, metrics.jsonl, checkpoints/, curves.png, final/",
    "model": "architecture preset (clipforge.registry.ARCHITECTURES) or a ModelConfig JSON",
    "model_overrides": 'JSON merged into the architecture, e.g. \'{"vision": {"layers": 4}}\'',
    "init": "fine-tune from this checkpoint (any format clipforge.load reads)",
    "init_text": "train a fresh --model image tower against this checkpoint's text tower, tokenizer (instead of "
    "--tokenizer) and temperature",
    "tokenizer": "bpe (OpenAI's) or words (a word vocabulary built from the shapes world)",
    "data": "sources: shapes[:N][::variety=rich], CSV/TSV/JSONL manifests, folders, tar shards ({a..b} ok)",
    "weights": "sampling weight per --data source",
    "samples_per_epoch": "samples drawn per epoch (default: the sum of the sources)",
    "val_data": "shapes (the default validation when --val-datasets is not given) or none",
    "val_datasets": "validate on these evaluation datasets (clipforge eval --dataset specs) instead",
    "loss": "clip, siglip, cloob or distill (distill needs --teacher)",
    "loss_options": "JSON loss arguments, e.g. '{\"alpha\": 0.5}'",
    "teacher": "distillation teacher: a checkpoint clipforge.load reads (kept frozen)",
    "local_loss": "under torchrun, score only local rows against all columns (clip, cloob, distill)",
    "gather_with_grad": "all-gather features with gradient (exact large-batch gradient)",
    "epochs": "passes over the data",
    "max_steps": "train exactly this many optimiser steps (wins over --epochs: epochs go on as needed)",
    "batch_size": "global batch per optimiser step (split over processes and --accum-steps)",
    "accum_steps": "micro-batches per step (features cached, so the loss sees the whole batch)",
    "lr": "peak learning rate (AdamW)",
    "weight_decay": "AdamW weight decay (not on biases, norms, gains, logit scale)",
    "betas": "AdamW betas",
    "eps": "AdamW epsilon",
    "warmup_steps": "linear warm-up steps before the cosine decay",
    "min_lr": "learning rate at the end of the cosine decay",
    "grad_clip": "clip the gradient norm to this value",
    "precision": "fp32, bf16 (autocast, CPU or CUDA) or fp16 (CUDA, with a gradient scaler)",
    "grad_checkpointing": "recompute activations in the backward pass (less memory)",
    "lock_image": "freeze the image tower (LiT)",
    "lock_text": "freeze the text tower",
    "train_crop_scale": "RandomResizedCrop area range MIN MAX",
    "hflip": "random horizontal flips (off: captions say left/right)",
    "workers": "data-loading processes",
    "seed": "seed of data order, augmentation and initialisation",
    "log_every": "steps between metrics.jsonl rows",
    "save_every": "steps between checkpoints",
    "keep_last": "checkpoints kept",
    "eval_every": "steps between validations (0: only at the end)",
    "val_samples": "images per validation dataset",
    "device": "cpu, cuda, cuda:1 ... (default: cuda if available)",
}


def _help(field: dataclasses.Field[typing.Any], defaults: TrainConfig) -> str:
    """The field's help with its TrainConfig default (flags default to None so a config file can fill them)."""
    default = getattr(defaults, field.name)
    shown = json.dumps(default) if isinstance(default, (dict, list, tuple)) else default
    return f"{FIELD_HELP[field.name]} (default: {shown})"


class _DeprecatedConfig(argparse.Action):
    """`train --config FILE`: the old name of --train-config (elsewhere --config is an architecture)."""

    def __call__(self, parser, namespace, values, option_string=None):
        warnings.warn(
            "clipforge train --config is deprecated: use --train-config FILE.json (the architecture is --model; "
            "--config names an architecture in the other commands)",
            FutureWarning,
            stacklevel=2,
        )
        setattr(namespace, self.dest, values)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--train-config`, `--resume`, `--quiet` and one flag per `TrainConfig` field."""
    parser.add_argument(
        "--train-config", dest="train_config", default=None, metavar="JSON", help="base TrainConfig JSON file"
    )
    parser.add_argument("--config", dest="train_config", action=_DeprecatedConfig, help=argparse.SUPPRESS)
    parser.add_argument(
        "--resume",
        default="auto",
        help="auto (latest in out-dir; a run with another config is refused), none (start afresh, deleting the "
        "out-dir's checkpoints), or a checkpoint path",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    hints, defaults = typing.get_type_hints(TrainConfig), TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        flag, hint = "--" + f.name.replace("_", "-"), hints[f.name]
        kinds = set(typing.get_args(hint)) or {hint}
        options: dict[str, typing.Any] = {"dest": f.name, "default": None, "help": _help(f, defaults)}
        if bool in kinds:
            options["action"] = argparse.BooleanOptionalAction
        elif f.name == "loss":
            options["choices"] = LOSSES
        elif f.name in ("data", "val_datasets"):
            options["nargs"] = "+"
        elif f.name in ("weights", "betas", "train_crop_scale"):
            options.update(nargs="+", type=float)
        elif f.name in ("model_overrides", "loss_options"):
            options["type"] = json.loads
        elif int in kinds:
            options["type"] = int
        elif float in kinds:
            options["type"] = float
        elif typing.get_origin(hint) is typing.Literal:
            options["choices"] = typing.get_args(hint)
        parser.add_argument(flag, **options)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The `--train-config` file (if any) with every flag given on the command line applied over it."""
    base = TrainConfig.from_json(args.train_config).to_dict() if args.train_config else {}
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            base[f.name] = value
    return TrainConfig.from_dict(base)


def run(args: argparse.Namespace) -> int:
    summary = train(config_from_args(args), resume=args.resume, progress=not args.quiet)
    if summary.get("final_model"):
        print(json.dumps(summary, indent=2))
    return 0
