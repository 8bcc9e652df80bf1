"""Missing optional packages and bad user values: one line naming what to do, exit code 2, before any work.

The CLI runs in a subprocess (`conftest.run_cli`) in which the "missing" modules are blocked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib
from conftest import one_line_error, run_cli

from clipforge.extras import DISTRIBUTIONS, EXTRAS

ROOT = Path(__file__).resolve().parents[1]
FAISS = "install faiss-cpu (pip install 'clipforge[index]')"


@pytest.mark.parametrize(
    "args, block, message",
    [
        (["index", "build", "IMAGES", "--out", "OUT"], ("faiss",), FAISS),
        (["index", "info", "OUT"], ("pyarrow",), "install pyarrow (pip install 'clipforge[index]')"),
        (["search", "OUT", "a cat"], ("faiss",), FAISS),
        (["serve", "OUT"], ("uvicorn",), "install uvicorn (pip install 'clipforge[serve]')"),
        (
            ["anomaly", "eval", "--dataset", "IMAGES", "--out", "OUT"],
            ("sklearn",),
            "install scikit-learn (pip install 'clipforge[anomaly]')",
        ),
        (["serve", "OUT"], ("anyio",), "install anyio (pip install 'clipforge[serve]')"),
        (
            ["adapt", "--method", "linear-probe", "--dataset", "shapes:shape", "--shots", "1", "--model", "MODEL"],
            ("sklearn",),
            "install scikit-learn (pip install 'clipforge[eval]')",
        ),
        (
            ["eval", "--dataset", "shapes:shape", "--task", "linear-probe", "--model", "MODEL", "--out", "OUT"],
            ("sklearn",),
            "cannot run linear-probe on 'shapes:shape': install scikit-learn (pip install 'clipforge[eval]')",
        ),
        (
            ["eval", "--dataset", "shapes:shape", "--model", "MODEL", "--out", "OUT"],
            ("matplotlib",),
            "install matplotlib (pip install 'clipforge[eval]'), or pass --no-plots",
        ),
    ],
)
def test_missing_optional_package_is_one_line_before_any_work(model_dir, tmp_path, args, block, message):
    images = tmp_path / "images"
    images.mkdir()
    names = {"IMAGES": str(images), "OUT": str(tmp_path / "index"), "MODEL": str(model_dir)}
    run = run_cli([names.get(a, a) for a in args], block, cwd=tmp_path)
    one_line_error(run, args[0], message)
    assert not (tmp_path / "index").exists()  # nothing was built or embedded


def test_bad_adapt_hyperparameter_names_the_flag_and_the_type(model_dir):
    run = run_cli(["adapt", "--method", "coop", "--dataset", "shapes:shape", "--set", "n_ctx=abc"])
    one_line_error(run, "adapt", "--set (coop): n_ctx expects an integer, got 'abc'")
    run = run_cli(["adapt", "--method", "coop", "--dataset", "shapes:shape", "--set", "position=top"])
    one_line_error(run, "adapt", "--set (coop): position expects one of 'end', 'middle', 'front', got 'top'")


def test_bad_shapes_size_names_the_flag_and_what_it_expects(tmp_path):
    run = run_cli(["train", "--data", "shapes:abc", "--out-dir", str(tmp_path / "run"), "--quiet"])
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "(--data) 'shapes:abc': 'abc' is not a sample count (shapes:N)" in run.stderr
    assert not (tmp_path / "run" / "final").exists()


def test_extras_table_matches_pyproject():
    """Every module the hints name is installed by the extra they name."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra, modules in EXTRAS.items():
        distributions = {re.split(r"[<>=;\[ ]", req)[0] for req in declared[extra]}
        for module in modules:
            if module == "anyio":  # fastapi's own dependency
                continue
            assert DISTRIBUTIONS.get(module, module) in distributions, (extra, module)
