"""`index build` takes --config/--activation like every model-loading command and records them, so
`index add`, `search` and `serve` load the same model; `search` and `serve` pick the device as the other
commands do (CUDA when present)."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image
from safetensors.torch import save_file

import clipforge
from clipforge.checkpoints.openai import native_to_openai
from clipforge.cli.main import build_parser


@pytest.fixture(scope="module")
def bare_weights(tmp_path_factory):
    """The tiny model as a bare OpenAI-layout state dict: nothing records its QuickGELU activation."""
    torch.manual_seed(0)
    model = clipforge.create_model("tiny")
    path = tmp_path_factory.mktemp("bare") / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in native_to_openai(model.state_dict()).items()}, path)
    return path


def test_index_build_records_activation_and_search_uses_it(bare_weights, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 32, 3), 60 * i, np.uint8)).save(images / f"{i}.png")
    out = tmp_path / "idx"
    args = ["index", "build", str(images), "--out", str(out), "--model", str(bare_weights), "--quiet"]
    run = run_cli([*args, "--activation", "quick_gelu"])
    assert run.returncode == 0, run.stderr[-2000:]
    assert "record their activation" not in run.stderr  # no "guessing the activation" warning
    record = json.loads((out / "index.json").read_text())["model"]
    assert record["activation"] == "quick_gelu" and record["path"] == str(bare_weights)

    search = run_cli(["search", str(out), "a red circle", "-k", "2", "--json"])
    assert search.returncode == 0, search.stderr[-2000:]
    assert "record their activation" not in search.stderr
    assert len(search.stdout.splitlines()) == 2


@pytest.mark.parametrize("argv", [["search", "IDX", "a cat"], ["serve", "IDX"], ["index", "build", "x", "--out", "o"]])
def test_device_defaults_to_the_shared_policy(argv):
    """No command pins the CPU: --device left out means clipforge.load's choice (cuda if available)."""
    parser = build_parser()
    assert parser.parse_args(argv).device is None
    sub = next(a for a in parser._subparsers._group_actions if a.dest == "command").choices[argv[0]]
    if argv[0] == "index":
        sub = next(a for a in sub._subparsers._group_actions).choices["build"]
    device = next(a for a in sub._actions if a.dest == "device")
    assert "cuda if available" in device.help


def test_python_entry_points_leave_the_device_to_the_shared_policy():
    from clipforge.index.search import SearchIndex
    from clipforge.serve import create_app

    assert inspect.signature(SearchIndex.open).parameters["device"].default is None
    assert inspect.signature(create_app).parameters["device"].default is None
