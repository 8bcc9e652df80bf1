"""Fixtures shared by several test modules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import clipforge


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A saved, randomly initialised `tiny` model (seed 0), read-only for the tests that load it."""
    d = tmp_path_factory.mktemp("tiny-model")
    torch.manual_seed(0)
    clipforge.save(clipforge.create_model("tiny"), d, clipforge.get_tokenizer("tiny"))
    return d


def random_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Give every BatchNorm random statistics and affine terms (in place), so that folding, saving and
    eval-mode normalisation are exercised rather than identity layers."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.normal_(1, 0.1)
                m.bias.normal_(0, 0.1)
    return model


SRC = Path(__file__).resolve().parents[1] / "src"

#: a `clipforge` process whose first argument lists modules to block, the way Python itself marks a module
#: unimportable (`sys.modules[name] = None`: `import name` raises ModuleNotFoundError and
#: `importlib.util.find_spec(name)` returns None)
PRELUDE = (
    "import sys\n"
    "for name in sys.argv.pop(1).split(','):\n"
    "    if name: sys.modules[name] = None\n"
    "from clipforge.cli.main import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def run_cli(
    args: list[str], block: tuple[str, ...] = (), cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`clipforge ARGS` in a subprocess that imports this checkout, with `env` added to the environment."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, "-c", PRELUDE, ",".join(block), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def one_line_error(run: subprocess.CompletedProcess, command: str, message: str) -> None:
    """The process exited 2 after printing exactly `clipforge COMMAND: error: MESSAGE` (no traceback)."""
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert lines == [f"clipforge {command}: error: {message}"], run.stderr[-2000:]
