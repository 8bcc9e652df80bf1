"""CLIP-score filtering and SemDeDup de-duplication of manifests, checked against direct computations."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

import clipforge
from clipforge.curate.filters import deduplicate, filter_by_clip_score, score_keep, semdedup
from clipforge.data.shapes import ShapesWorld

pytest.importorskip("matplotlib")


def _brute_force(features: np.ndarray, valid: np.ndarray, cluster: np.ndarray, threshold: float) -> np.ndarray:
    """The SemDeDup rule written out pair by pair: per cluster, members ordered by cosine to the
    normalised mean (lowest first); a member duplicates the most similar earlier one at >= threshold."""
    duplicate_of = np.full(len(features), -1)
    for c in np.unique(cluster[valid]):
        members = [i for i in range(len(features)) if valid[i] and cluster[i] == c]
        centroid = features[members].astype(np.float64).mean(0)
        centroid /= np.linalg.norm(centroid)
        order = sorted(members, key=lambda i: (round(float(features[i] @ centroid), 6), i))
        for pos, j in enumerate(order):
            earlier = [(float(features[i] @ features[j]), i) for i in order[:pos]]
            if earlier and max(earlier)[0] >= threshold:
                best = max(s for s, _ in earlier)
                duplicate_of[j] = next(i for s, i in earlier if s == best)
    return duplicate_of


@pytest.mark.parametrize("clusters", [1, 4])
def test_semdedup_equals_the_pairwise_rule(clusters):
    rng = np.random.default_rng(0)
    base = rng.standard_normal((40, 16)).astype(np.float32)
    near = base[:10] + 0.02 * rng.standard_normal((10, 16)).astype(np.float32)  # planted near-duplicates
    x = np.concatenate([base, near, base[:3]])  # and exact copies
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    valid = np.ones(len(x), bool)
    valid[5] = False  # an unreadable row takes no part
    dups = semdedup(x, valid, threshold=0.97, clusters=clusters, seed=0)
    expected = _brute_force(x, valid, dups.cluster, 0.97)
    assert dups.duplicate_of.tolist() == expected.tolist()
    pairs = {frozenset((i, int(d))) for i, d in enumerate(dups.duplicate_of) if d >= 0}
    planted = {frozenset((i, 40 + i)) for i in range(10) if i != 5} | {frozenset((i, 50 + i)) for i in range(3)}
    if clusters == 1:
        assert planted <= pairs | {frozenset((40 + i, 50 + i)) for i in range(3)}  # each planted pair is one group
    assert dups.cluster[5] == -1 and dups.duplicate_of[5] == -1
    assert np.all(dups.similarity[dups.removed] >= 0.97)


def test_score_rules():
    scores = np.array([0.3, np.nan, 0.1, 0.3, 0.2], np.float32)
    assert score_keep(scores, min_score=0.2).tolist() == [True, False, False, True, True]
    assert score_keep(scores, top_fraction=0.5).tolist() == [True, False, False, True, False]  # ceil(0.5 * 4)
    with pytest.raises(ValueError, match="exactly one"):
        score_keep(scores)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        score_keep(scores, top_fraction=1.5)


@pytest.fixture(scope="module")
def default_model():
    return clipforge.load(None, device="cpu")


def _manifest(tmp_path, n=24):
    world = ShapesWorld(seed=3, split="test", size=n)
    folder = tmp_path / "imgs"
    folder.mkdir()
    rows, wrong = [], []
    for i in range(n):
        s = world.sample(i)
        s.image.save(folder / f"{i}.png")
        caption = s.caption
        if i % 2:  # every other caption names another shape
            other = next(c for c in ("circle", "square", "triangle", "star") if c not in caption)
            for shape in ("circle", "square", "triangle", "star", "hexagon", "pentagon", "heart", "cross"):
                if shape in caption:
                    caption = caption.replace(shape, other)
                    break
        rows.append({"filepath": f"imgs/{i}.png", "caption": caption, "id": str(i)})
        wrong.append(caption != s.caption)
    (folder / "broken.png").write_bytes(b"not a png")
    rows.append({"filepath": "imgs/broken.png", "caption": "a red circle", "id": "broken"})
    wrong.append(False)
    path = tmp_path / "pairs.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["filepath", "caption", "id"])
        writer.writeheader()
        writer.writerows(rows)
    return path, rows, np.array(wrong)


def test_clip_score_filter_keeps_matching_captions(tmp_path, default_model):
    model, preprocess, tokenizer = default_model
    path, rows, wrong = _manifest(tmp_path)
    out = tmp_path / "out"
    result = filter_by_clip_score(path, out, model, preprocess, tokenizer, top_fraction=0.5, progress=False)
    report = result.report
    assert report["rows_in"] == 25 and report["removed"]["unreadable image"] == 1 and report["rows_out"] == 12
    with open(result.manifest, newline="") as fh:
        kept = list(csv.DictReader(fh))
    assert list(kept[0]) == ["filepath", "caption", "id"]
    ids = [int(r["id"]) for r in kept]
    assert ids == sorted(ids)  # input order
    # the scores are the cosines of the model's own features
    images = [Image.open(tmp_path / "imgs" / f"{i}.png").convert("RGB") for i in range(24)]
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(im) for im in images]), normalize=True)
        txt = model.encode_text(tokenizer([r["caption"] for r in rows[:24]]), normalize=True)
    scores = (img * txt).sum(1).numpy()
    expected = sorted(range(24), key=lambda i: (-scores[i], i))[:12]
    assert ids == sorted(expected)
    assert abs(report["lowest_kept_score"] - scores[expected].min()) < 1e-5
    assert wrong[ids].mean() < wrong[:24].mean()  # matching captions score higher than swapped ones
    assert result.plot is not None and result.plot.stat().st_size > 0
    assert json.loads(result.report_path.read_text())["method"] == "clip-score"


def test_dedup_removes_planted_copies_and_names_them(tmp_path, default_model):
    model, preprocess, _ = default_model
    path, rows, _ = _manifest(tmp_path, n=12)
    for i in (0, 1, 2):  # an exact copy and a re-encoded JPEG of three images
        Image.open(tmp_path / "imgs" / f"{i}.png").save(tmp_path / "imgs" / f"{i}-copy.png")
        Image.open(tmp_path / "imgs" / f"{i}.png").convert("RGB").save(tmp_path / "imgs" / f"{i}.jpg", quality=90)
    with open(path, "a", newline="") as fh:
        writer = csv.writer(fh)
        for i in (0, 1, 2):
            writer.writerow([f"imgs/{i}-copy.png", "copy", f"{i}-copy"])
            writer.writerow([f"imgs/{i}.jpg", "jpeg", f"{i}-jpeg"])
    result = deduplicate(path, tmp_path / "dd", model, preprocess, threshold=0.99, clusters=1, progress=False)
    report = result.report
    for i, (copy_row, jpeg_row) in zip((0, 1, 2), ((13, 14), (15, 16), (17, 18))):
        members = {i, copy_row, jpeg_row}
        survivors = members - {d["row"] for d in report["duplicates"]}
        assert len(survivors) == 1  # one of each planted group is kept
    assert report["removed"]["unreadable image"] == 1
    with open(result.manifest, newline="") as fh:
        assert len(list(csv.DictReader(fh))) == report["rows_out"] == 19 - 1 - len(report["duplicates"])
    assert all(d["cosine"] >= 0.99 for d in report["duplicates"])


def test_curate_commands_run(tmp_path, capsys):
    from clipforge.cli.main import main

    path, _, _ = _manifest(tmp_path, n=8)
    assert main(["curate", "filter", "--data", str(path), "--out", str(tmp_path / "f"), "--clip-score-min", "0.0",
                 "--quiet"]) == 0
    assert "clip-score: kept" in capsys.readouterr().out
    assert (tmp_path / "f" / "filtered.csv").is_file() and (tmp_path / "f" / "clip_scores.png").is_file()
    assert main(["curate", "dedup", "--data", str(path), "--out", str(tmp_path / "d"), "--quiet"]) == 0
    assert "semdedup: kept" in capsys.readouterr().out
    assert json.loads((tmp_path / "d" / "dedup.json").read_text())["clusters"] == 1
