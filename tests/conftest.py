"""Fixtures shared by several test modules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import clipforge


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A native checkpoint directory of the randomly initialised `tiny` preset (seed 0): 32 px, 32 dims."""
    d = tmp_path_factory.mktemp("tiny-model")
    torch.manual_seed(0)
    clipforge.save(clipforge.create_model("tiny"), d, clipforge.get_tokenizer("tiny"))
    return d
