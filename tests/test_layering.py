"""Static checks run with the tests: layers import only downward, and the typed core type-checks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the encoder protocol, its implementations' faces, the data layer and the leaves it rests on
TYPED = [
    "src/clipforge/runtime", "src/clipforge/data", "src/clipforge/registry.py", "src/clipforge/files.py",
    "src/clipforge/adapt/surface.py", "src/clipforge/fast/encoder.py",
]


def test_import_layers():
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    run = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:]


def test_typed_core_type_checks():
    pytest.importorskip("mypy")
    run = subprocess.run([sys.executable, "-m", "mypy", *TYPED], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:]
