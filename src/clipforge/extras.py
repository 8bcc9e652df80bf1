"""Optional dependencies: which extra of `pyproject.toml` installs each module, and one check that a
command runs before any work, so a missing package is one line ("install faiss-cpu (pip install
'clipforge[index]')") instead of a traceback after minutes of embedding.
"""

from __future__ import annotations

import importlib.util
from typing import Iterable

#: import names each extra provides, in the order a hint prefers them (`tests/test_cli_needs.py` checks
#: this table against pyproject.toml)
EXTRAS: dict[str, tuple[str, ...]] = {
    "index": ("faiss", "pyarrow"),
    "serve": ("fastapi", "pydantic", "uvicorn", "anyio", "multipart", "faiss", "pyarrow"),
    "eval": ("sklearn", "threadpoolctl", "matplotlib"),
    "anomaly": ("sklearn", "matplotlib"),
    "curate": ("ahocorasick", "matplotlib"),
    "coco": ("pycocotools",),
    "onnx": ("onnx", "onnxscript", "onnxruntime"),
    "hf": ("transformers",),
    "plot": ("matplotlib",),
    "table": ("pyarrow",),
}

#: the pip distribution of an import name, where the two differ (anyio comes with fastapi)
DISTRIBUTIONS: dict[str, str] = {
    "faiss": "faiss-cpu", "sklearn": "scikit-learn", "multipart": "python-multipart", "ahocorasick": "pyahocorasick",
}


class MissingExtra(ValueError):
    """An optional package is not installed (a ValueError, so the CLI prints it as one line, exit 2)."""


def install_hint(module: str, extra: str | None = None) -> str:
    """`install faiss-cpu (pip install 'clipforge[index]')` for an import name (its top-level package)."""
    top = module.split(".")[0]
    extra = extra or next((name for name, modules in EXTRAS.items() if top in modules), "all")
    return f"install {DISTRIBUTIONS.get(top, top)} (pip install 'clipforge[{extra}]')"


def missing(modules: Iterable[str]) -> list[str]:
    """The modules of `modules` that cannot be imported (found without importing them)."""
    absent = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package is absent, or a module without a spec
            found = False
        if not found:
            absent.append(module)
    return absent


def require(modules: Iterable[str], extra: str | None = None) -> None:
    """Raise `MissingExtra` naming the first absent module and the extra that installs it."""
    absent = missing(modules)
    if absent:
        raise MissingExtra(install_hint(absent[0], extra))


def require_extra(extra: str) -> None:
    """Every module of one extra (e.g. `require_extra("index")` before building an index)."""
    require(EXTRAS[extra], extra)
