"""Static checks run with the tests: layers import only downward, and the typed core type-checks."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the whole package is type-checked (the encoder protocol's implementations included)
TYPED = ["src/clipforge"]


def test_import_layers():
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    run = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:]


def test_package_type_checks():
    pytest.importorskip("mypy")
    run = subprocess.run([sys.executable, "-m", "mypy", *TYPED], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:]


def _function_level_imports(path: Path) -> list[str]:
    """`file:line` of imports inside functions that carry no reason (a comment on the line or just above)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = set()
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    first = sub.lineno - 1  # a run of consecutive imports shares one reason
                    while first > 0 and lines[first - 1].strip().startswith(("import ", "from ")):
                        first -= 1
                    group, above = lines[first : sub.lineno], lines[first - 1].strip()
                    reasoned = any("#" in line for line in group) or above.startswith("#")
                    reasoned = reasoned or (above.startswith("try:") and "#" in above)
                    if not reasoned:
                        found.add(f"{path.relative_to(ROOT)}:{sub.lineno}")
    return sorted(found)


def test_function_level_imports_are_optional_dependencies_with_a_reason():
    bare = [hit for p in sorted((ROOT / "src" / "clipforge").rglob("*.py")) for hit in _function_level_imports(p)]
    assert bare == [], "import at module level, or give the optional dependency's reason in a comment"
    # the check sees an unexplained import inside a function
    probe = ROOT / "tests" / "_probe_imports.py"
    try:
        probe.write_text("def f():\n    import json\n    return json\n", encoding="utf-8")
        assert _function_level_imports(probe) == ["tests/_probe_imports.py:2"]
    finally:
        probe.unlink()


def test_ruff_is_clean():
    exe = shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    run = subprocess.run([exe, "check", "src", "tests", "bench"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:]
