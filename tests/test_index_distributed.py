"""Multi-process index build: torchrun with 2 CPU ranks (gloo on loopback) equals a single-process build."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import clipforge
from clipforge.data.shapes import ShapesWorld, write_webdataset

pytest.importorskip("faiss")
pytest.importorskip("pyarrow")

from clipforge.index import BuildOptions, SearchIndex, build_index  # noqa: E402

SRC = Path(clipforge.__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_ranks_equals_single_process(tmp_path):
    torch.manual_seed(0)
    model = tmp_path / "model"
    clipforge.save(clipforge.create_model("tiny"), model, clipforge.get_tokenizer("tiny"))
    write_webdataset(ShapesWorld(seed=5, image_size=32), tmp_path / "wds", n=45, shard_size=15)
    (tmp_path / "wds" / "shard-000003.tar").write_bytes(b"")  # not listed by the pattern below
    pattern = str(tmp_path / "wds" / "shard-{000000..000002}.tar")
    opts = BuildOptions(shard_size=6, captions=True, progress=False)
    single = build_index([pattern], tmp_path / "single", model=model, options=opts)

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        "GLOO_SOCKET_IFNAME": "lo",
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--nnodes",
        "1",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "clipforge",
        "index",
        "build",
        pattern,
        "--out",
        str(tmp_path / "multi"),
        "--model",
        str(model),
        "--shard-size",
        "6",
        "--captions",
        "--quiet",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "45 items" in proc.stdout and "shards embedded 8" in proc.stdout

    a, b = SearchIndex.open(tmp_path / "single"), SearchIndex.open(tmp_path / "multi")
    assert single.total == len(b) == 45
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "single" / "metadata.parquet").equals(
        pq.read_table(tmp_path / "multi" / "metadata.parquet")
    )
    rows = np.arange(45)
    np.testing.assert_allclose(b.vectors(rows), a.vectors(rows), atol=1e-5)
    np.testing.assert_allclose(b.vectors(rows, ".captions.npy"), a.vectors(rows, ".captions.npy"), atol=1e-5)
    for query in ("a red circle", "two blue squares"):
        assert [h.id for h in a.search_text(query, k=8)] == [h.id for h in b.search_text(query, k=8)]
