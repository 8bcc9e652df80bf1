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
from clipforge.data.shapes.anomaly import write_anomaly_dataset
from clipforge.evaluate.anomaly import score_category

pytest.importorskip("faiss")
SMALL = {"grid": 8, "scales": (2, 3), "window_stride": 2}  # 32 windows an image: quick, still multi-scale
pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """A small MVTec-layout set of the shapes world's anomaly parts: circles, 4 normal training images,
    12 test images (4 good, 2 per defect type)."""
    return write_anomaly_dataset(tmp_path_factory.mktemp("parts"), ["circle"], n_train=4, n_test_good=4,
                                 n_test_per_defect=2)


@pytest.fixture(scope="module")
def default():
    model, _, tokenizer = clipforge.load(backend="none")
    return model, tokenizer


@pytest.fixture(scope="module")
def resnet():
    """The embedded ResNet: its mid-level maps and text tower are what the documented results used
    (the ViT default's patch tokens do not localise yet, README model table)."""
    model, _, tokenizer = clipforge.load("default-rn", backend="none")
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
    method = WinCLIP(model, tokenizer, "circle", **SMALL)
    image = Image.open(parts / "circle/test/spot/000.png").convert("RGB")
    got = method.score([image])
    pixels = working_pixels(model, [image], method.options["image_size"])
    small = F.interpolate(pixels, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        feature = model.encode_image(small, normalize=True)
    expected = ((feature @ method.text.T) / 0.07).softmax(-1)[0, 1]
    assert float(got.image[0]) == pytest.approx(float(expected), abs=1e-5)
    assert got.maps.shape == (1, 8, 8) and (got.maps > 0).all() and (got.maps < 1).all()


@pytest.mark.parametrize("name", ["winclip", "patchcore"])
def test_a_fitted_memory_round_trips_through_save_and_load(default, parts, tmp_path, name, model_dir):
    model, tokenizer = default
    normal = [Image.open(p).convert("RGB") for p in sorted((parts / "circle/train/good").glob("*.png"))[:2]]
    options = SMALL if name == "winclip" else {}
    method = clipforge.anomaly.base.ANOMALY_METHODS.create(name, model, tokenizer, "circle", **options).fit(normal)
    method.save(tmp_path / "memory")
    again = AnomalyMethod.load(tmp_path / "memory", model, tokenizer)
    assert type(again) is type(method) and again.shots == 2 and again.options == method.options
    assert again.memory.keys() == method.memory.keys()
    assert all(torch.equal(again.memory[k], method.memory[k]) for k in method.memory)
    test = [Image.open(parts / "circle/test/spot/001.png").convert("RGB")]
    assert torch.equal(again.score(test).maps, method.score(test).maps)
    other, _, other_tokenizer = clipforge.load(model_dir, backend="none")
    with pytest.raises(ValueError, match="another model"):
        AnomalyMethod.load(tmp_path / "memory", other, other_tokenizer)
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
    args = ["anomaly", "eval", "--dataset", str(parts), "--out", str(out), "--backend", "none", "--model", "default-rn"]
    assert main([*args, "--method", "patchcore", "--shots", "2"]) == 0
    report = json.loads((out / "anomaly.json").read_text())
    row = report["categories"][0]
    for key in ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_aupro"):
        assert 0 <= row[key] <= 1 and report["mean"][key] == pytest.approx(row[key])
    assert row["image_auroc"] > 0.8 and row["pixel_auroc"] > 0.8, row
    assert (out / "circle.png").stat().st_size > 5000
    small = ["--grid", "8", "--scales", "2", "3", "--window-stride", "2"]
    assert main([*args, "--method", "winclip", "--shots", "1", *small, "--no-plots"]) == 0
    row = json.loads((out / "anomaly.json").read_text())["categories"][0]
    assert row["shots"] == 1 and row["pixel_auroc"] > 0.75, row
    assert main([*args, "--method", "winclip", "--shots", "0", *small, "--no-plots"]) == 0
    row = json.loads((out / "anomaly.json").read_text())["categories"][0]
    assert row["shots"] == 0 and row["pixel_auroc"] > 0.6, row  # zero-shot, from text alone
    assert main([*args, "--method", "patchcore", "--shots", "99"]) == 2  # more shots than train/good holds
    assert main([*args, "--method", "anomalyclip"]) == 2  # untrained prompts are refused, not scored


def test_anomaly_fit_then_score_writes_scores_and_overlays(parts, tmp_path, capsys):
    memory, out = tmp_path / "memory", tmp_path / "scored"
    base = ["--backend", "none", "--method", "patchcore"]
    fit = ["anomaly", "fit", "--dataset", str(parts / "circle"), "--shots", "3", "--out", str(memory), *base]
    assert main(fit) == 0
    (tmp_path / "broken.png").write_bytes(b"not a png")
    images = [str(parts / f"circle/test/{kind}/000.png") for kind in ("spot", "good")] + [str(tmp_path / "broken.png")]
    assert main(["anomaly", "score", *images, "--memory", str(memory), "--out", str(out)]) == 0
    result = json.loads((out / "scores.json").read_text())
    scores = {r["image"].split("/")[-2]: r["score"] for r in result["scores"]}
    assert scores["spot"] > scores["good"] and len(result["skipped"]) == 1
    assert Image.open(out / "000.heat.png").size == (128, 128)
    assert "skipped 1" in capsys.readouterr().out
    assert main(["anomaly", "score", images[0], "--method", "patchcore", "--out", str(out), "--backend", "none"]) == 2
    no_shots = ["anomaly", "fit", "--dataset", str(parts / "circle"), "--shots", "0", "--out", str(memory), *base]
    assert main(no_shots) == 2
    evaluate = ["anomaly", "eval", "--dataset", str(parts), "--memory", str(memory), "--out", str(tmp_path / "e")]
    assert main(evaluate) == 2  # a PatchCore memory belongs to its own category
    assert json.loads((out / "scores.json").read_text())["map_range"][0] >= 0
    assert AnomalySet(parts, category="circle").labels("test").sum() == 10


def test_window_cover_and_focal_loss_against_direct_computations():
    from clipforge.anomaly.anomalyclip import focal_loss, window_cover

    cells = torch.rand(2, 6, 6)
    got = window_cover(cells, 3, 2)
    for w, (t, x) in enumerate(window_boxes(6, 3, 2)):
        assert torch.allclose(got[:, w], cells[:, t : t + 3, x : x + 3].mean(dim=(1, 2)))
    p, y = torch.tensor([0.9, 0.2, 0.6]), torch.tensor([1.0, 0.0, 0.0])
    pt = torch.tensor([0.9, 0.8, 0.4])
    assert focal_loss(p, y) == pytest.approx(float((-(1 - pt) ** 2 * pt.log()).mean()))


def test_anomalyclip_prompts_train_round_trip_and_score_unseen_objects(resnet, parts, tmp_path):
    from clipforge.anomaly import AnomalyCLIP

    model, tokenizer = resnet
    root = write_anomaly_dataset(tmp_path / "aux", ["square", "star"], n_train=1, n_test_good=2, n_test_per_defect=1)
    images, masks = [], []
    for name in ("square", "star"):
        d = AnomalySet(root, category=name)
        images += [Image.open(item.path).convert("RGB") for item in d.split("test")]
        masks += [d.mask("test", i) for i in range(len(d.split("test")))]
    images[0], masks[0] = images[0].resize((96, 96)), masks[0][::4, ::4]  # other sizes than the rest
    method = AnomalyCLIP(model, tokenizer, **SMALL)
    before = method.text.clone()
    losses = method.train_prompts(images, masks, steps=40, categories=["square", "star"], progress=False)
    assert losses[-1] < 0.8 * losses[0] and not torch.allclose(before, method.text)
    method.save(tmp_path / "prompts")
    again = AnomalyMethod.load(tmp_path / "prompts", model, tokenizer)
    assert isinstance(again, AnomalyCLIP) and again.options["trained_on"] == ["square", "star"]
    assert torch.equal(again.text, method.text)
    unseen = [Image.open(p).convert("RGB") for p in sorted((root.parent / "aux").glob("*/test/*/*.png"))[:1]]
    out = again.score(unseen)
    assert out.maps.shape == (1, 8, 8) and torch.isfinite(out.maps).all()
    assert model.text.token_embedding.weight.requires_grad  # the towers' flags are restored after training
    unseen_parts = score_category(AnomalySet(parts, category="circle"), again, progress=False)
    assert unseen_parts.metrics["image_auroc"] > 0.6, unseen_parts.metrics  # circles: never in its training
