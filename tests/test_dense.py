"""Dense features (last-block readouts, sliding windows) and zero-shot segmentation metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import clipforge
from clipforge.data.masks import open_mask_source
from clipforge.dense import METHODS, SegmentationScores, encode_dense, segment, segment_dataset
from clipforge.dense import features as D


def _perturbed(name: str) -> clipforge.model.CLIP:
    torch.manual_seed(0)
    model = clipforge.create_model(name).eval()
    with torch.no_grad():  # away from init (zero biases, identical norms) so every term matters
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def vit():
    return _perturbed("tiny")


def _pixels(model, n=2, height=None, width=None):
    size = model.config.vision.image_size
    return torch.randn(n, 3, height or size, width or size, generator=torch.Generator().manual_seed(1))


def _qkv(block, x):
    w, b = block.attn.in_proj_weight, block.attn.in_proj_bias
    return [F.linear(block.ln_1(x), w.chunk(3)[i], b.chunk(3)[i]) for i in range(3)]


def _heads(t, h):
    b, n, d = t.shape
    return t.view(b, n, h, d // h).transpose(1, 2)


def _before_last(model, pixels):
    x = model.visual.tokens(pixels)
    for block in model.visual.transformer.resblocks[:-1]:
        x = block(x)
    return x, model.visual.transformer.resblocks[-1]


def _readout(model, z, pixels):
    grid = pixels.shape[-1] // model.config.vision.patch_size
    return (model.visual.ln_post(z[:, 1:]) @ model.visual.proj).reshape(len(pixels), grid, grid, -1)


@torch.no_grad()
def test_maskclip_and_naive_readouts_equal_hand_computations(vit):
    pixels = _pixels(vit)
    x, last = _before_last(vit, pixels)
    _, _, v = _qkv(last, x)
    z = x + last.attn.out_proj(v)
    z = z + last.mlp(last.ln_2(z))
    torch.testing.assert_close(encode_dense(vit, pixels, "maskclip"), _readout(vit, z, pixels))
    plain = _readout(vit, vit.visual.forward_hidden(pixels), pixels)
    torch.testing.assert_close(encode_dense(vit, pixels, "naive"), plain)
    assert encode_dense(vit, pixels).shape == (2, 4, 4, vit.embed_dim)


@torch.no_grad()
def test_self_attention_variants_equal_hand_computations(vit, monkeypatch):
    pixels = _pixels(vit)
    x, last = _before_last(vit, pixels)
    h = last.attn.heads
    q, k, v = (_heads(t, h) for t in _qkv(last, x))

    def attend(a, b=None):
        logits = a @ a.transpose(-1, -2) / math.sqrt(a.shape[-1])
        return (logits if b is None else logits + b).softmax(-1)

    def merge(o):
        return last.attn.out_proj(o.transpose(1, 2).reshape(x.shape))

    torch.testing.assert_close(encode_dense(vit, pixels, "clearclip"), _readout(vit, merge(attend(q) @ v), pixels))
    sclip = x + merge((attend(q) + attend(k)) @ v)
    torch.testing.assert_close(encode_dense(vit, pixels, "sclip"), _readout(vit, sclip, pixels))
    # NACLIP: the neighbourhood prior favours near patches; with a huge sigma it vanishes (plain k-k attention)
    monkeypatch.setattr(D, "NACLIP_SIGMA", 1e6)
    torch.testing.assert_close(encode_dense(vit, pixels, "naclip"), _readout(vit, merge(attend(k) @ v), pixels))
    monkeypatch.setattr(D, "NACLIP_SIGMA", 5.0)
    assert not torch.allclose(encode_dense(vit, pixels, "naclip"), _readout(vit, merge(attend(k) @ v), pixels))
    bias = D._neighbourhood_bias((4, 4), 5.0, torch.device("cpu"), torch.float32)
    assert bias[1, 1] == 0 and bias[1, 2] > bias[1, 1 + 5] > bias[1, 16] and bias[0].abs().sum() == 0


@torch.no_grad()
def test_a_registered_readout_is_used_and_unknown_names_list_the_choices(vit, monkeypatch):
    pixels = _pixels(vit)
    x, last = _before_last(vit, pixels)
    monkeypatch.setitem(METHODS._entries, "no-mlp", lambda block, t, grid: t + block.attn(block.ln_1(t)))
    assert "no-mlp" in METHODS
    expected = _readout(vit, x + last.attn(last.ln_1(x)), pixels)
    torch.testing.assert_close(encode_dense(vit, pixels, "no-mlp"), expected)
    with pytest.raises(ValueError, match="unknown dense method 'maskclp'.*did you mean maskclip"):
        encode_dense(vit, pixels, "maskclp")


@torch.no_grad()
def test_sliding_windows(vit):
    size = vit.config.vision.image_size
    one = _pixels(vit, 1)
    torch.testing.assert_close(encode_dense(vit, one, "clearclip"), D._dense_once(vit, one, "clearclip"))
    wide = _pixels(vit, 1, size, 2 * size)
    halves = encode_dense(vit, wide, "maskclip", stride=size)  # two windows that do not overlap
    grid = size // vit.config.vision.patch_size
    torch.testing.assert_close(halves[:, :, :grid], encode_dense(vit, wide[..., :size], "maskclip"))
    torch.testing.assert_close(halves[:, :, grid:], encode_dense(vit, wide[..., size:], "maskclip"))
    overlapped = encode_dense(vit, wide, "maskclip")  # default stride: windows overlap and are averaged
    assert overlapped.shape == halves.shape and not torch.allclose(overlapped, halves)
    torch.testing.assert_close(overlapped[:, :, :1], halves[:, :, :1])  # columns only the first window sees
    assert encode_dense(vit, wide, upsample=True).shape == (1, size, 2 * size, vit.embed_dim)
    with pytest.raises(ValueError, match="not a multiple of the output stride 8"):
        encode_dense(vit, _pixels(vit, 1, size, size + 4))
    with pytest.raises(ValueError, match="smaller than the window"):
        encode_dense(vit, _pixels(vit, 1, size - 8, size))
    with pytest.raises(ValueError, match="unknown dense method"):
        encode_dense(vit, one, "segment-anything")


@torch.no_grad()
def test_resnet_value_path():
    rn = _perturbed("tiny-rn")
    pixels = _pixels(rn)
    pool = rn.visual.attnpool
    expected = pool.c_proj(pool.v_proj(rn.visual.feature_map(pixels).permute(0, 2, 3, 1)))
    torch.testing.assert_close(encode_dense(rn, pixels), expected)
    with pytest.raises(ValueError, match="needs a ViT"):
        encode_dense(rn, pixels, "clearclip")


def test_segmentation_metrics_against_a_hand_count():
    truth = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 1, 0]])
    s = SegmentationScores(4)
    s.update(pred, truth)
    # class 0: tp 1, fp 0, fn 1 → 1/2; class 1: tp 2, fp 2 (from 0 and 2), fn 0 → 2/4; class 2: 0/1; class 3 absent
    assert s.per_class_iou() == [0.5, 0.5, 0.0, None]
    summary = s.summary()
    assert summary["miou"] == pytest.approx(1 / 3) and summary["pixel_accuracy"] == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="holds class 7"):
        s.update(np.array([[7]]), np.array([[0]]))


@torch.no_grad()
def test_segment_labels_follow_the_best_cosine(vit):
    pixels = _pixels(vit, 1)
    weights = F.normalize(torch.randn(3, vit.embed_dim), dim=-1)
    labels, scores = segment(vit, pixels, weights)
    assert labels.shape == (1, 32, 32) and scores.shape == (1, 3, 32, 32)
    assert torch.equal(labels, scores.argmax(1))
    bg, _ = segment(vit, pixels, weights, background_threshold=2.0)  # cosines never reach 2: all background
    assert bg.unique().tolist() == [0]
    small, _ = segment(vit, pixels, weights, size=(10, 12))
    assert small.shape == (1, 10, 12)


def test_zero_shot_segmentation_runs_over_a_mask_source(vit):
    tok = clipforge.get_tokenizer("tiny")
    source = open_mask_source("shapes:seg:test:6?image_size=32")
    for method in METHODS:
        run = segment_dataset(vit, tok, source, method, templates=["a {}."], progress=False, n_examples=2)
        assert run.summary["images"] == 6 and run.summary["pixels"] == 6 * 32 * 32
        assert 0 <= run.summary["miou"] <= 1 and len(run.summary["per_class_iou"]) == len(source.classnames)
        assert len(run.examples) == 2 and run.examples[0][1].shape == run.examples[0][2].shape == (32, 32)


def test_segment_command_writes_masks_overlays_and_a_summary(model_dir, tmp_path, capsys):
    import json

    from PIL import Image

    from clipforge.cli.main import main

    source = open_mask_source("shapes:seg:test:3?image_size=32")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(len(source)):
        source.load(i)[0].save(folder / f"s{i}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "seg"
    argv = ["segment", str(folder), "--labels", "circle,square", "--out", str(out), "--model", str(model_dir)]
    assert main([*argv, "--method", "clearclip", "--background-threshold", "0.0"]) == 0
    summary = json.loads((out / "segments.json").read_text())
    assert summary["labels"] == ["background", "circle", "square"] and summary["skipped"] == 1
    assert "broken.png" in summary["skipped_items"][0]["source"] and len(summary["images"]) == 3
    mask = np.asarray(Image.open(out / summary["images"][0]["mask"]))
    assert mask.shape == (32, 32) and set(np.unique(mask).tolist()) <= {0, 1, 2}
    assert sum(summary["images"][0]["areas"].values()) == pytest.approx(float((mask > 0).mean()))
    assert Image.open(next(out.glob("*.overlay.png"))).size == (32, 32)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([*argv, "--method", "sam"])  # argparse refuses an unknown method


def test_segmentation_is_an_evaluation_task(model_dir, tmp_path):
    import json

    from clipforge.data.shapes import ShapesWorld, write_mask_dataset
    from clipforge.evaluate import evaluate

    folder = write_mask_dataset(ShapesWorld(split="test", image_size=32), tmp_path / "masks", n=4)
    opts = {"cache_dir": None, "progress": False}
    specs = ["shapes:seg:test:5?image_size=32", str(folder)]
    runs = evaluate("segmentation", specs, model_dir, tmp_path / "ev", **opts)
    for run, n in zip(runs, (5, 4)):
        assert run.result is not None and run.result.dataset["n_images"] == n
        saved = json.loads(run.path.read_text())
        assert 0 <= saved["summary"]["miou"] <= 1 and set(saved["metrics"]["per_class_iou"]) >= {"background", "circle"}
        assert saved["plots"] and (run.path.parent / saved["plots"][0]).is_file()
    everything = evaluate("all", "shapes:seg:test:5?image_size=32", model_dir, None, **opts)
    assert {o.task for o in everything if o.result is not None} == {"segmentation"}
    assert any(o.skipped == "the dataset has no class labels" for o in everything)
    with pytest.raises(ValueError, match="cannot run segmentation .*no pixel masks"):
        evaluate("segmentation", "shapes:colour?n=4", model_dir, None, **opts)
    clear = evaluate("segmentation", "shapes:seg:test:5?image_size=32", model_dir, None, **opts,
                     extra={"dense_method": "clearclip", "background_threshold": 0.0})
    assert clear[0].result.parameters["dense_method"] == "clearclip"


@torch.no_grad()
def test_a_conv_stem_mean_pooled_vit_reads_out_densely():
    torch.manual_seed(0)
    model = clipforge.create_model("tiny", vision={"stem_widths": [8, 16], "pool": "mean"}).eval()
    pixels = _pixels(model)
    dense = encode_dense(model, pixels, "naive")
    assert dense.shape == (2, 4, 4, model.embed_dim)  # the stem keeps the token grid
    # mean pooling: the image embedding is exactly the average of the naive per-patch readouts
    torch.testing.assert_close(dense.mean(dim=(1, 2)), model.encode_image(pixels))
