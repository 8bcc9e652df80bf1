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
