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

from ..train import TrainConfig, train

HELP = "train or fine-tune a CLIP model (torchrun --nproc_per_node N -m clipforge train ... for DDP)"
FIELD_HELP = {
    "loss": "clip, siglip, cloob or distill (distill needs --teacher)",
    "teacher": "distillation teacher: a checkpoint clipforge.load reads (kept frozen)",
    "val_data": "shapes (the default validation when --val-datasets is not given) or none",
    "val_datasets": "validate on these evaluation datasets (clipforge eval --dataset specs) instead",
}


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
    parser.add_argument("--resume", default="auto", help="auto (latest in out-dir), none, or a checkpoint path")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        kinds = set(typing.get_args(hint)) or {hint}
        if bool in kinds:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        elif f.name in ("data",):
            parser.add_argument(
                flag,
                dest=f.name,
                nargs="+",
                default=None,
                help="sources: shapes[:N][::variety=rich], CSV/TSV/JSONL manifests, folders, tar shards ({a..b} ok)",
            )
        elif f.name == "val_datasets":
            parser.add_argument(
                flag,
                dest=f.name,
                nargs="+",
                default=None,
                help=FIELD_HELP[f.name],
            )
        elif f.name in ("weights", "betas", "train_crop_scale"):
            parser.add_argument(flag, dest=f.name, nargs="+", type=float, default=None)
        elif f.name == "model_overrides":
            parser.add_argument(
                flag, dest=f.name, type=json.loads, default=None, help='JSON, e.g. \'{"vision": {"layers": 4}}\''
            )
        elif f.name == "loss_options":
            parser.add_argument(
                flag, dest=f.name, type=json.loads, default=None, help="JSON loss arguments, e.g. '{\"alpha\": 0.5}'"
            )
        elif int in kinds:
            parser.add_argument(flag, dest=f.name, type=int, default=None)
        elif float in kinds:
            parser.add_argument(flag, dest=f.name, type=float, default=None)
        else:
            parser.add_argument(flag, dest=f.name, default=None, help=FIELD_HELP.get(f.name))


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
