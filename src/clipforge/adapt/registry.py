"""Method names → adapter classes (`clipforge adapt --method NAME`)."""

from __future__ import annotations

import importlib

from .base import Adapter

#: method name → "module:Class" (imported on first use so optional pieces stay cheap)
METHODS: dict[str, str] = {
    "zeroshot": "zeroshot:ZeroShot",
    "linear-probe": "linear_probe:LinearProbe",
    "tip-adapter": "tip_adapter:TipAdapter",
    "tip-adapter-f": "tip_adapter:TipAdapterF",
    "gda": "gda:GDA",
    "clip-adapter": "clip_adapter:ClipAdapter",
    "coop": "coop:CoOp",
    "cocoop": "cocoop:CoCoOp",
    "maple": "maple:MaPLe",
    "tpt": "tpt:TPT",
    "finetune": "finetune:FineTune",
    "lora": "lora:LoRA",
    "wise-ft": "wise_ft:WiSEFT",
    "soup": "soup:ModelSoup",
}


def get_method(name: str) -> type[Adapter]:
    if name not in METHODS:
        raise ValueError(f"unknown adaptation method {name!r}; choose from {', '.join(METHODS)}")
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), cls)


def list_methods() -> list[str]:
    return list(METHODS)
