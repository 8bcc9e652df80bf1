"""Fixtures shared by several test modules."""

from __future__ import annotations

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
