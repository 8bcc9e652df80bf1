"""Anomaly methods: window aggregation against a direct computation, memories that round-trip,
methods above chance on a small MVTec-layout set, and the `clipforge anomaly` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import clipforge
import clipforge.anomaly.base
from clipforge.anomaly.base import AnomalyMethod
from clipforge.anomaly.features import harmonic_aggregate, harmonic_mean, window_boxes, working_pixels
from clipforge.anomaly.patchcore import PatchCore, greedy_coreset
from clipforge.anomaly.winclip import WinCLIP
from clipforge.cli.main import main
from clipforge.data.anomaly import AnomalySet

pytest.importorskip("faiss")
pytest.importorskip("sklearn")


def _part(rng: np.random.Generator, defect: bool) -> tuple[Image.Image, np.ndarray]:
    """A red square on grey with grain; a defect is a blue spot on it."""
    a = np.full((128, 128, 3), 185, np.float32)
    t, left = rng.integers(30, 36, 2)
    a[t : t + 60, left : left + 60] = (200, 40, 40)
    mask = np.zeros((128, 128), dtype=bool)
    if defect:
        y, x = rng.integers(t + 5, t + 40, 2)
        mask[y : y + 14, x : x + 14] = True
        a[mask] = (40, 60, 210)
    a += rng.normal(0, 4, a.shape)
    return Image.fromarray(a.clip(0, 255).astype(np.uint8)), mask


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("mvtec")
    rng = np.random.default_rng(0)
    for split, defect, n in (("train/good", False, 6), ("test/good", False, 6), ("test/spot", True, 6)):
        folder = root / "square" / split
        folder.mkdir(parents=True)
        for i in range(n):
            image, mask = _part(rng, defect)
            image.save(folder / f"{i:03d}.png")
            if defect:
                (root / "square" / "ground_truth" / "spot").mkdir(parents=True, exist_ok=True)
                truth = root / "square/ground_truth/spot" / f"{i:03d}_mask.png"
                Image.fromarray(mask.astype(np.uint8) * 255).save(truth)
    return root


@pytest.fixture(scope="module")
def default():
    model, _, tokenizer = clipforge.load(backend="none")
    return model, tokenizer


def test_window_boxes_cover_the_grid_and_harmonic_aggregation_is_direct():
    grid, k, stride = 7, 3, 2
    boxes = window_boxes(grid, k, stride)
    covered = np.zeros((grid, grid), int)
    for t, x in boxes:
        covered[t : t + k, x : x + k] += 1
    assert covered.min() >= 1 and (grid - k, grid - k) in boxes
    scores = torch.rand(2, len(boxes)) + 0.05
    got = harmonic_aggregate(scores, grid, k, stride)
    for n in range(2):
        for i in range(grid):
            for j in range(grid):
                mine = [scores[n, w] for w, (t, x) in enumerate(boxes) if t <= i < t + k and x <= j < x + k]
                expected = len(mine) / sum(1 / s for s in mine)
                assert got[n, i, j] == pytest.approx(float(expected), rel=1e-6)
    maps = [torch.full((1, 2, 2), 0.5), torch.full((1, 2, 2), 0.25)]
    assert torch.allclose(harmonic_mean(maps), torch.full((1, 2, 2), 1 / 3))
    with pytest.raises(ValueError, match="does not fit"):
        window_boxes(4, 5)
    with pytest.raises(ValueError, match="uncovered"):
        window_boxes(16, 3, 4)


def test_winclip_zero_shot_image_score_is_the_prompt_softmax(default, parts):
    model, tokenizer = default
    method = WinCLIP(model, tokenizer, "square", window_stride=3)
    image = Image.open(parts / "square/test/spot/000.png").convert("RGB")
    got = method.score([image])
    pixels = working_pixels(model, [image], method.options["image_size"])
    small = F.interpolate(pixels, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        feature = model.encode_image(small, normalize=True)
    expected = ((feature @ method.text.T) / 0.07).softmax(-1)[0, 1]
    assert float(got.image[0]) == pytest.approx(float(expected), abs=1e-5)
    assert got.maps.shape == (1, 16, 16) and (got.maps > 0).all() and (got.maps < 1).all()


@pytest.mark.parametrize("name", ["winclip", "patchcore"])
def test_a_fitted_memory_round_trips_through_save_and_load(default, parts, tmp_path, name):
    model, tokenizer = default
    normal = [Image.open(p).convert("RGB") for p in sorted((parts / "square/train/good").glob("*.png"))[:2]]
    options = {"window_stride": 3} if name == "winclip" else {}
    method = clipforge.anomaly.base.ANOMALY_METHODS.create(name, model, tokenizer, "square", **options).fit(normal)
    method.save(tmp_path / "memory")
    again = AnomalyMethod.load(tmp_path / "memory", model, tokenizer)
    assert type(again) is type(method) and again.shots == 2 and again.options == method.options
    assert again.memory.keys() == method.memory.keys()
    assert all(torch.equal(again.memory[k], method.memory[k]) for k in method.memory)
    test = [Image.open(parts / "square/test/spot/001.png").convert("RGB")]
    assert torch.equal(again.score(test).maps, method.score(test).maps)
    (tmp_path / "memory" / "anomaly.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        AnomalyMethod.load(tmp_path / "memory", model, tokenizer)


def test_greedy_coreset_picks_spread_rows():
    pts = torch.cat([torch.zeros(50, 2), torch.ones(50, 2) * 10, torch.tensor([[100.0, 100.0]])])
    chosen = set(greedy_coreset(pts, 3).tolist())
    assert 100 in chosen and len({tuple(pts[i].tolist()) for i in chosen}) == 3
    assert greedy_coreset(pts, 500).tolist() == list(range(101))


def test_patchcore_needs_normal_images(default):
    model, tokenizer = default
    with pytest.raises(ValueError, match="at least one normal image"):
        PatchCore(model, tokenizer).fit([])


def test_anomaly_eval_writes_metrics_json_and_grids_and_beats_chance(parts, tmp_path):
    out = tmp_path / "eval"
    args = ["anomaly", "eval", "--dataset", str(parts), "--out", str(out), "--backend", "none"]
    assert main([*args, "--method", "patchcore", "--shots", "2"]) == 0
    report = json.loads((out / "anomaly.json").read_text())
    row = report["categories"][0]
    for key in ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_aupro"):
        assert 0 <= row[key] <= 1 and report["mean"][key] == pytest.approx(row[key])
    assert row["image_auroc"] > 0.8 and row["pixel_auroc"] > 0.8, row
    assert (out / "square.png").stat().st_size > 5000
    assert main([*args, "--method", "winclip", "--shots", "1", "--window-stride", "3", "--no-plots"]) == 0
    row = json.loads((out / "anomaly.json").read_text())["categories"][0]
    assert row["shots"] == 1 and row["pixel_auroc"] > 0.6, row
    assert main([*args, "--method", "patchcore", "--shots", "99"]) == 2  # more shots than train/good holds


def test_anomaly_fit_then_score_writes_scores_and_overlays(parts, tmp_path, capsys):
    memory, out = tmp_path / "memory", tmp_path / "scored"
    base = ["--backend", "none", "--method", "patchcore"]
    fit = ["anomaly", "fit", "--dataset", str(parts / "square"), "--shots", "3", "--out", str(memory), *base]
    assert main(fit) == 0
    (tmp_path / "broken.png").write_bytes(b"not a png")
    images = [str(parts / f"square/test/{kind}/000.png") for kind in ("spot", "good")] + [str(tmp_path / "broken.png")]
    assert main(["anomaly", "score", *images, "--memory", str(memory), "--out", str(out)]) == 0
    result = json.loads((out / "scores.json").read_text())
    scores = {r["image"].split("/")[-2]: r["score"] for r in result["scores"]}
    assert scores["spot"] > scores["good"] and len(result["skipped"]) == 1
    assert Image.open(out / "000.heat.png").size == (128, 128)
    assert "skipped 1" in capsys.readouterr().out
    assert main(["anomaly", "score", images[0], "--method", "patchcore", "--out", str(out), "--backend", "none"]) == 2
    assert AnomalySet(parts, category="square").labels("test").sum() == 6
