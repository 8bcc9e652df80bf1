"""Chunked retrieval: hand-computed ranks and agreement with dense computation at tiny chunk sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipforge.evaluate import ranking
from clipforge.evaluate.ranking import chunked_topk, rank_summary, retrieval_ranks


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def dense_ranks(img: np.ndarray, txt: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference: sort the full similarity matrix and find the first correct item."""
    sim = _unit(img) @ _unit(txt).T  # [n_img, n_txt]
    i2t = np.zeros(len(img), np.int64)
    for i in range(len(img)):
        if (owner == i).any():
            order = np.argsort(-sim[i], kind="stable")
            i2t[i] = 1 + np.flatnonzero(owner[order] == i)[0]
    t2i = np.array([1 + np.flatnonzero(np.argsort(-sim[:, c], kind="stable") == owner[c])[0] for c in range(len(txt))])
    return i2t, t2i


def test_hand_computed_ranks():
    # 2-D features: images at 0°, 90°, 180°; captions point at chosen angles.
    img = np.array([[1, 0], [0, 1], [-1, 0]], np.float32)
    txt = np.array([[1, 0.1], [0.1, 1], [1, 0.9], [-0.2, 1]], np.float32)
    owner = np.array([0, 1, 1, 2])
    i2t, t2i = retrieval_ranks(img, txt, owner)
    # caption 0 -> image 0 best (rank 1); caption 1 -> image 1 (rank 1); caption 2 (45°-ish) -> image 0
    # scores higher than image 1, so rank 2; caption 3 (~101°) -> image 1 first, image 2 second: rank 2.
    assert t2i.tolist() == [1, 1, 2, 2]
    # image 0: best caption is its own caption 0 (cos ~0.995); nothing beats it -> 1.
    # image 1: its captions 1, 2; caption 1 best (~0.995), caption 3 (~0.98) lower -> 1.
    # image 2 (180°): own caption 3 scores ~0.196; captions 0,1,2 all score lower -> 1.
    assert i2t.tolist() == [1, 1, 1]
    s = rank_summary(t2i, (1, 5))
    assert s == {"recall@1": 0.5, "recall@5": 1.0, "mean_rank": 1.5, "median_rank": 1.5, "n_queries": 4}


@pytest.mark.parametrize("stream", [False, True], ids=["gallery-in-memory", "gallery-streamed"])
@pytest.mark.parametrize("chunks", [(1, 1), (3, 4), (5, 2), (1024, 65536)])
def test_chunked_ranks_match_dense(chunks, stream, monkeypatch):
    if stream:  # read and normalise the gallery chunk by chunk, as for corpora too big for memory
        monkeypatch.setattr(ranking, "GALLERY_IN_MEMORY_BYTES", 0)
    rng = np.random.default_rng(0)
    n_img, dim = 17, 8
    owner = np.concatenate([np.arange(n_img - 2), rng.integers(0, n_img - 2, 12)])  # 2 images lack captions
    img = rng.normal(size=(n_img, dim)).astype(np.float32)
    txt = (img[owner] + 1.2 * rng.normal(size=(len(owner), dim))).astype(np.float32)
    i2t, t2i = retrieval_ranks(img, txt, owner, query_chunk=chunks[0], gallery_chunk=chunks[1])
    ref_i2t, ref_t2i = dense_ranks(img, txt, owner)
    assert np.array_equal(t2i, ref_t2i)
    assert np.array_equal(i2t, ref_i2t)
    assert (i2t[-2:] == 0).all()  # images without captions are not queries
    assert 0 < (t2i == 1).mean() < 1  # a non-trivial case


def test_features_need_not_be_normalised_and_may_be_memmaps(tmp_path):
    rng = np.random.default_rng(3)
    img = rng.normal(size=(9, 5)).astype(np.float32) * rng.uniform(0.1, 10, (9, 1)).astype(np.float32)
    txt = rng.normal(size=(9, 5)).astype(np.float32)
    np.save(tmp_path / "img.npy", img)
    mm = np.load(tmp_path / "img.npy", mmap_mode="r")
    owner = np.arange(9)
    a = retrieval_ranks(mm, txt, owner, query_chunk=2, gallery_chunk=3)
    b = dense_ranks(img, txt, owner)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("stream", [False, True], ids=["gallery-in-memory", "gallery-streamed"])
@pytest.mark.parametrize("chunks", [(1, 1), (2, 3), (7, 100)])
def test_chunked_topk_matches_dense(chunks, stream, monkeypatch):
    if stream:
        monkeypatch.setattr(ranking, "GALLERY_IN_MEMORY_BYTES", 0)
    rng = np.random.default_rng(1)
    q = rng.normal(size=(11, 6)).astype(np.float32)
    g = rng.normal(size=(29, 6)).astype(np.float32)
    scores, idx = chunked_topk(q, g, 5, query_chunk=chunks[0], gallery_chunk=chunks[1])
    dense = torch.from_numpy(_unit(q) @ _unit(g).T)
    ref_s, ref_i = dense.topk(5, dim=1)
    assert np.array_equal(idx, ref_i.numpy())
    assert np.allclose(scores, ref_s.numpy(), atol=1e-6)
    s_all, i_all = chunked_topk(q, g[:3], 5, gallery_chunk=2)  # k larger than the gallery
    assert i_all.shape == (11, 3)


def test_bad_caption_owner_is_refused():
    with pytest.raises(ValueError, match="one entry per caption"):
        retrieval_ranks(np.ones((2, 3), np.float32), np.ones((3, 3), np.float32), np.array([0, 1]))
    with pytest.raises(ValueError, match="index the 2 images"):
        retrieval_ranks(np.ones((2, 3), np.float32), np.ones((2, 3), np.float32), np.array([0, 5]))


@pytest.mark.parametrize("stream", [False, True], ids=["gallery-in-memory", "gallery-streamed"])
@pytest.mark.parametrize("chunks", [(1, 1), (3, 4), (1024, 65536)])
def test_exact_duplicates_tie_in_the_querys_favour(chunks, stream, monkeypatch):
    """Duplicated captions (one text for several images) and duplicated images score the same bits as the
    positive they copy, so by the rank convention they never push a query below rank 1."""
    if stream:
        monkeypatch.setattr(ranking, "GALLERY_IN_MEMORY_BYTES", 0)
    rng = np.random.default_rng(7)
    n, dim = 40, 48
    img = rng.normal(size=(n, dim)).astype(np.float32)
    img[n // 2 :] = img[: n // 2]  # image i + n/2 is an exact copy of image i
    owner = np.arange(n)
    txt = (img + 0.05 * rng.normal(size=(n, dim))).astype(np.float32)
    txt[n // 2 :] = txt[: n // 2]  # so is its caption: duplicated captions for duplicated images
    i2t, t2i = retrieval_ranks(img, txt, owner, query_chunk=chunks[0], gallery_chunk=chunks[1])
    # every caption's best match is its image's twin or its image, a tie: rank 1 (and likewise images)
    assert t2i.tolist() == [1] * n
    assert i2t.tolist() == [1] * n
