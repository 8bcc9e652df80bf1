"""Method names → adapter classes (`clipforge adapt --method NAME`), in `clipforge.registry.ADAPTERS`.

Entries are lazy ("module:Class", imported on first use) so listing methods stays cheap.
"""

from __future__ import annotations

from ..registry import ADAPTERS
from .base import Adapter

for _name, _target in {
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
}.items():
    ADAPTERS.register_lazy(_name, f"{__package__}.{_target}")


def get_method(name: str) -> type[Adapter]:
    return ADAPTERS.get(name)


def list_methods() -> list[str]:
    return ADAPTERS.list()
