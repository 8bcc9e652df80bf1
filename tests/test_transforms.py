"""Tests for clipforge.transforms: parity with the reference CLIP preprocessing.

Parity findings against Hugging Face `CLIPImageProcessor` (transformers 5.x; without torchvision
it resolves to the PIL backend, `CLIPImageProcessorPil`, which we import directly):

* Resize size rule, PIL bicubic/bilinear resampling, rescale (float64 x * 1/255 -> float32 equals
  float32 x / 255 for all 256 values) and normalisation agree bit for bit -> max |diff| == 0.
* Centre-crop offset: torchvision uses `int(round((size - n) / 2.0))` (Python round, ties to
  even), HF uses `(size - n) // 2`. They differ by one pixel exactly when the excess is 3 mod 4
  (e.g. rocket: 640x427 -> 335x224, excess 111: torchvision 56, HF 55). HF chose floor on purpose
  (huggingface/transformers#40856; the mismatch with OpenAI is huggingface/transformers#22505;
  torchvision's rule: pytorch/vision#5274, #7705). There we prove each side follows its rule by
  recomputing both pipelines with PIL + numpy.
* Transparency: HF composites RGBA / transparent palettes onto white before resizing; OpenAI drops
  alpha (`convert("RGB")`). Images from `load_image` are already RGB and match HF on the RGB data.
* Mode-dependent resampling in the OpenAI order (resize, crop, *then* RGB): Pillow resizes "P"
  with NEAREST and "RGBA" with premultiplied alpha, so a raw palette/RGBA PIL image passed to
  `ImageTransform` gives OpenAI's result, which differs from HF's convert-first result.
"""

from __future__ import annotations

import functools
import io
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from clipforge.config import OPENAI_MEAN, OPENAI_STD, PreprocessConfig
from clipforge.images import load_image
from clipforge.transforms import (
    MAX_RESIZE_PIXELS,
    ImageTransform,
    TrainTransform,
    center_crop,
    center_crop_box,
    denormalize,
    random_resized_crop_params,
    resize_crop_shortest,
    resize_shortest,
    resize_shortest_size,
)

skdata = pytest.importorskip("skimage.data")
transformers = pytest.importorskip("transformers")
transformers.utils.logging.set_verbosity_error()
try:
    from transformers import CLIPImageProcessorPil as HFProcessor
except ImportError:  # older transformers: the classic processor is the PIL one
    from transformers import CLIPImageProcessor as HFProcessor

BICUBIC, BILINEAR = Image.Resampling.BICUBIC, Image.Resampling.BILINEAR


# ----------------------------------------------------------------------------- helpers


@functools.lru_cache(maxsize=None)
def _photos() -> dict[str, Image.Image]:
    astronaut = skdata.astronaut()
    rocket = skdata.rocket()
    return {
        "astronaut": Image.fromarray(astronaut),  # 512x512 RGB
        "coffee": Image.fromarray(skdata.coffee()),  # 600x400
        "chelsea": Image.fromarray(skdata.chelsea()),  # 451x300
        "rocket": Image.fromarray(rocket),  # 640x427
        "camera": Image.fromarray(skdata.camera()),  # 512x512, mode "L"
        "tiny": Image.fromarray(skdata.coffee()).resize((21, 14), BICUBIC),  # smaller than the crop
        "wide_strip": Image.fromarray(astronaut[200:240]),  # 512x40
        "tall_strip": Image.fromarray(astronaut[:, 250:280]),  # 30x512
        "sliver": Image.fromarray(rocket[200:203, :320]),  # 320x3, aspect ratio 107:1
    }


@functools.lru_cache(maxsize=None)
def _hf(size: int, squash: bool = False, resample: int = BICUBIC) -> HFProcessor:
    shape = {"height": size, "width": size}
    return HFProcessor(
        size=shape if squash else {"shortest_edge": size},
        crop_size=shape,
        do_center_crop=not squash,
        resample=resample,
        image_mean=list(OPENAI_MEAN),
        image_std=list(OPENAI_STD),
    )


def hf_pixels(image: Image.Image, size: int = 224, **kw: object) -> np.ndarray:
    return _hf(size, **kw)(image, return_tensors="np")["pixel_values"][0]


def ours(image: object, size: int = 224, **cfg: object) -> np.ndarray:
    return ImageTransform(PreprocessConfig(image_size=size, **cfg))(image).numpy()


def reference(image: Image.Image, n: int, rule: str = "torchvision", resample: int = BICUBIC) -> np.ndarray:
    """Independent re-computation with PIL + numpy of either crop rule.

    "torchvision": OpenAI's Resize/CenterCrop/convert("RGB") order with Python-round offsets;
    "floor": the same with floor offsets (HF). The image is resized in its own mode, like OpenAI.
    """
    w, h = image.size
    nw, nh = (n, int(n * h / w)) if w <= h else (int(n * w / h), n)
    if (nw, nh) != (w, h):
        image = image.resize((nw, nh), resample)
    if rule == "torchvision":
        left, top = int(round((nw - n) / 2.0)), int(round((nh - n) / 2.0))
    else:
        left, top = (nw - n) // 2, (nh - n) // 2
    rgb = image.crop((left, top, left + n, top + n)).convert("RGB")
    x = np.asarray(rgb, dtype=np.float32) / np.float32(255)
    x = (x - np.asarray(OPENAI_MEAN, np.float32)) / np.asarray(OPENAI_STD, np.float32)
    return x.transpose(2, 0, 1)


def offsets_agree(image: Image.Image, n: int) -> bool:
    nw, nh = resize_shortest_size(image.width, image.height, n)
    return all(int(round((s - n) / 2.0)) == (s - n) // 2 for s in (nw, nh))


def maxdiff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


# ----------------------------------------------------------------------------- HF parity


AGREE_224 = ["astronaut", "coffee", "chelsea", "camera", "tiny", "tall_strip", "sliver"]
DIFFER_224 = ["rocket", "wide_strip"]


@pytest.mark.parametrize("name", AGREE_224)
def test_hf_parity_exact(name: str) -> None:
    image = _photos()[name]
    assert offsets_agree(image, 224)
    mine, theirs = ours(image), hf_pixels(image)
    assert mine.shape == theirs.shape == (3, 224, 224) and mine.dtype == np.float32
    assert maxdiff(mine, theirs) == 0.0, f"{name}: max |diff| {maxdiff(mine, theirs)}"


@pytest.mark.parametrize("name", DIFFER_224)
def test_hf_differs_only_by_crop_rounding(name: str) -> None:
    image = _photos()[name]
    assert not offsets_agree(image, 224)  # excess is 3 mod 4 along the long side
    mine, theirs = ours(image), hf_pixels(image)
    assert maxdiff(mine, theirs) > 0.05  # a one-pixel shift is visible
    np.testing.assert_array_equal(mine, reference(image, 224, "torchvision"))
    np.testing.assert_array_equal(theirs, reference(image, 224, "floor"))
    # Exactly a one-pixel shift along the long axis: torchvision's offset is HF's + 1.
    if image.width > image.height:
        np.testing.assert_array_equal(mine[:, :, :-1], theirs[:, :, 1:])
    else:
        np.testing.assert_array_equal(mine[:, :-1, :], theirs[:, 1:, :])


def test_rocket_offsets_documented() -> None:
    assert resize_shortest_size(640, 427, 224) == (335, 224)
    assert center_crop_box(335, 224, 224) == (56, 0, 280, 224)  # HF would start at 55


@pytest.mark.parametrize("size", [32, 64, 336])
def test_other_sizes_follow_torchvision_and_match_hf_where_rules_agree(size: int) -> None:
    agreed = 0
    for name, image in _photos().items():
        mine, theirs = ours(image, size), hf_pixels(image, size)
        assert mine.shape == (3, size, size)
        np.testing.assert_array_equal(mine, reference(image, size, "torchvision"), err_msg=name)
        np.testing.assert_array_equal(theirs, reference(image, size, "floor"), err_msg=name)
        if offsets_agree(image, size):
            agreed += 1
            assert maxdiff(mine, theirs) == 0.0, name
    assert agreed >= 3


@pytest.mark.parametrize("size", [32, 224, 336])
def test_squash_matches_hf_exactly(size: int) -> None:
    for name, image in _photos().items():
        mine = ours(image, size, resize_mode="squash")
        assert mine.shape == (3, size, size)
        assert maxdiff(mine, hf_pixels(image, size, squash=True)) == 0.0, name


def test_bilinear_matches_hf_exactly() -> None:
    for name in ("chelsea", "coffee", "camera"):
        image = _photos()[name]
        mine = ours(image, interpolation="bilinear")
        assert maxdiff(mine, hf_pixels(image, resample=BILINEAR)) == 0.0
        np.testing.assert_array_equal(mine, reference(image, 224, resample=BILINEAR))


def _rgba() -> Image.Image:
    chelsea = _photos()["chelsea"]
    alpha = np.tile(np.linspace(0, 255, chelsea.width).astype(np.uint8), (chelsea.height, 1))
    alpha[:, :60] = 0  # a fully transparent band whose hidden colours are still the photo
    rgba = chelsea.copy()
    rgba.putalpha(Image.fromarray(alpha))
    return rgba


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def test_rgba_alpha_handling() -> None:
    rgba = _rgba()
    theirs = hf_pixels(rgba)
    # HF composites onto white before anything else ...
    white = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    assert maxdiff(theirs, ours(white)) == 0.0
    # ... while the OpenAI convention (and load_image) just drops alpha.
    loaded = load_image(_png_bytes(rgba))
    assert loaded.mode == "RGB"
    assert maxdiff(ours(loaded), hf_pixels(rgba.convert("RGB"))) == 0.0
    assert maxdiff(ours(loaded), theirs) > 1.0  # transparent band: photo (ours) vs white (HF)
    # A raw RGBA PIL image goes through OpenAI's exact order: Pillow resizes RGBA with
    # premultiplied alpha, then convert("RGB") drops alpha -> not the same as converting first.
    direct = ours(rgba)
    np.testing.assert_array_equal(direct, reference(rgba, 224))
    assert maxdiff(direct, ours(loaded)) > 0.01


def test_palette_image() -> None:
    palette = _photos()["chelsea"].quantize(256)
    assert palette.mode == "P"
    # load_image expands the palette first: identical to HF, which converts to RGB first.
    assert maxdiff(ours(load_image(_png_bytes(palette))), hf_pixels(palette)) == 0.0
    # A raw "P" image follows OpenAI's order, where Pillow forces NEAREST for palette resizes.
    direct = ours(palette)
    np.testing.assert_array_equal(direct, reference(palette, 224))
    assert maxdiff(direct, hf_pixels(palette)) > 0.05


def test_grayscale_equals_rgb_path() -> None:
    camera = _photos()["camera"]
    assert camera.mode == "L"
    assert maxdiff(ours(camera), ours(camera.convert("RGB"))) == 0.0


# ----------------------------------------------------------------------------- geometry helpers


@pytest.mark.parametrize(
    ("w", "h", "n", "expected"),
    [
        (640, 427, 224, (335, 224)),
        (451, 300, 224, (336, 224)),  # 336.75 truncates
        (300, 451, 224, (224, 336)),
        (512, 512, 224, (224, 224)),
        (224, 500, 224, (224, 500)),  # already right: unchanged
        (21, 14, 224, (336, 224)),
        (7, 1000, 32, (32, 4571)),
    ],
)
def test_resize_shortest_size(w: int, h: int, n: int, expected: tuple[int, int]) -> None:
    assert resize_shortest_size(w, h, n) == expected


def test_resize_is_identity_when_size_matches() -> None:
    image = Image.new("RGB", (224, 300), (10, 20, 30))
    assert resize_shortest(image, 224) is image


def _torchvision_center_crop_numpy(arr: np.ndarray, n: int) -> np.ndarray:
    """torchvision's pad-then-crop, written independently with numpy (HWC)."""
    h, w = arr.shape[:2]
    pad_t, pad_b = ((n - h) // 2, (n - h + 1) // 2) if n > h else (0, 0)
    pad_l, pad_r = ((n - w) // 2, (n - w + 1) // 2) if n > w else (0, 0)
    arr = np.pad(arr, ((pad_t, pad_b), (pad_l, pad_r), (0, 0)))
    h, w = arr.shape[:2]
    top, left = int(round((h - n) / 2.0)), int(round((w - n) / 2.0))
    return arr[top : top + n, left : left + n]


@pytest.mark.parametrize("shape", [(5, 8), (8, 5), (7, 7), (13, 6), (30, 3), (11, 40), (40, 11), (27, 27)])
@pytest.mark.parametrize("n", [10, 11, 24])
def test_center_crop_matches_torchvision_rule_including_padding(shape: tuple[int, int], n: int) -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(1, 256, size=(*shape, 3), dtype=np.uint8)
    got = np.asarray(center_crop(Image.fromarray(arr), n))
    np.testing.assert_array_equal(got, _torchvision_center_crop_numpy(arr, n))


# ----------------------------------------------------------------------------- inputs & outputs


def test_numpy_and_path_inputs(tmp_path) -> None:
    image = _photos()["chelsea"]
    arr = np.asarray(image)
    expected = ours(image)
    np.testing.assert_array_equal(ours(arr), expected)
    path = tmp_path / "chelsea.png"
    image.save(path)
    np.testing.assert_array_equal(ours(path), expected)
    np.testing.assert_array_equal(ours(str(path)), expected)
    gray = np.asarray(_photos()["camera"])
    np.testing.assert_array_equal(ours(gray), ours(_photos()["camera"]))
    np.testing.assert_array_equal(ours(gray[:, :, None]), ours(gray))
    with pytest.raises(TypeError):
        ours(arr.astype(np.float32))
    with pytest.raises(ValueError):
        ours(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(TypeError):
        ours(torch.zeros(3, 4, 4))


def test_sixteen_bit_pil_input_is_scaled_not_clipped() -> None:
    arr = np.full((40, 40), 32768, dtype=np.uint16)
    out = ImageTransform(PreprocessConfig(image_size=32)).resize_crop(Image.fromarray(arr))
    assert np.asarray(out.convert("RGB"))[0, 0].tolist() == [128, 128, 128]


def test_batch() -> None:
    t = ImageTransform(PreprocessConfig(image_size=32))
    images = [_photos()[k] for k in ("astronaut", "camera", "tiny")]
    batch = t.batch(images)
    assert batch.shape == (3, 3, 32, 32) and batch.dtype == torch.float32
    for i, image in enumerate(images):
        assert torch.equal(batch[i], t(image))
    assert t.batch([]).shape == (0, 3, 32, 32)


def test_denormalize_round_trips_exactly() -> None:
    cfg = PreprocessConfig(image_size=64)
    t = ImageTransform(cfg)
    image = _photos()["rocket"]
    expected = np.asarray(t.resize_crop(image).convert("RGB"))
    out = denormalize(t(image), cfg)
    assert out.dtype == np.uint8 and out.shape == (64, 64, 3)
    np.testing.assert_array_equal(out, expected)
    both = denormalize(t.batch([image, image]), cfg)
    assert both.shape == (2, 64, 64, 3)
    np.testing.assert_array_equal(both[1], expected)
    with pytest.raises(ValueError):
        denormalize(torch.zeros(4, 8, 8), cfg)


def test_invalid_config() -> None:
    with pytest.raises(ValueError):
        ImageTransform(PreprocessConfig(resize_mode="pad"))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ImageTransform(PreprocessConfig(interpolation="nearest"))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- training transform


def test_train_transform_reproducible_and_seed_dependent() -> None:
    t = TrainTransform(PreprocessConfig(image_size=64), hflip=True)
    image = _photos()["astronaut"]
    a = t(image, generator=123)
    assert a.shape == (3, 64, 64) and a.dtype == torch.float32
    assert torch.equal(a, t(image, generator=123))
    g = torch.Generator().manual_seed(7)
    state = g.get_state()
    first = t(image, generator=g)
    g.set_state(state)
    assert torch.equal(first, t(image, generator=g))  # same generator state -> same output
    outs = [t(image, generator=s) for s in range(8)]
    assert all(not torch.equal(outs[0], o) for o in outs[1:])  # different seeds -> different crops


def test_train_transform_owned_seed_and_batch() -> None:
    cfg = PreprocessConfig(image_size=32)
    image = _photos()["chelsea"]
    a = TrainTransform(cfg, seed=5)
    b = TrainTransform(cfg, seed=5)
    assert torch.equal(a(image), b(image)) and torch.equal(a(image), b(image))
    t = TrainTransform(cfg)
    batch = t.batch([image] * 3, generator=11)
    assert batch.shape == (3, 3, 32, 32)
    assert torch.equal(batch, t.batch([image] * 3, generator=11))
    with pytest.raises(TypeError):
        t(image, generator="seed")  # type: ignore[arg-type]


def test_train_transform_global_rng_consumption_matches_generator() -> None:
    torch.manual_seed(3)
    p_global = [random_resized_crop_params(451, 300, (0.08, 1.0), (3 / 4, 4 / 3)) for _ in range(5)]
    g = torch.Generator().manual_seed(3)
    p_gen = [random_resized_crop_params(451, 300, (0.08, 1.0), (3 / 4, 4 / 3), g) for _ in range(5)]
    assert p_global == p_gen


def test_random_resized_crop_params_bounds_and_fallback() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        top, left, h, w = random_resized_crop_params(451, 300, (0.9, 1.0), (3 / 4, 4 / 3), g)
        assert 0 <= top <= 300 - h and 0 <= left <= 451 - w and h > 0 and w > 0
        assert 0.85 <= h * w / (451 * 300) <= 1.0
        assert 3 / 4 - 0.02 <= w / h <= 4 / 3 + 0.02
    # 1000x10 can never fit a 3/4..4/3 crop of >= 90% area: ten misses, then the centre fallback.
    assert random_resized_crop_params(1000, 10, (0.9, 1.0), (3 / 4, 4 / 3), g) == (0, (1000 - 13) // 2, 10, 13)
    assert random_resized_crop_params(10, 1000, (0.9, 1.0), (3 / 4, 4 / 3), g) == ((1000 - 13) // 2, 0, 13, 10)


def test_wide_photos_always_take_the_fallback_crop_at_default_scale() -> None:
    # With scale >= 0.9 and ratio <= 4/3, a 3:2 photo (600x400) cannot fit any candidate crop
    # (largest 4:3 crop covers 0.889 of it), so torchvision's fallback centre crop is used every time.
    crops = {
        random_resized_crop_params(600, 400, (0.9, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(s))
        for s in range(20)
    }
    assert crops == {(0, 33, 400, 533)}


def test_train_transform_flip_is_a_mirror_of_the_same_crop() -> None:
    cfg = PreprocessConfig(image_size=32)
    plain, flipping = TrainTransform(cfg), TrainTransform(cfg, hflip=True)
    image = _photos()["astronaut"]
    flipped = 0
    for seed in range(12):
        base, out = plain(image, generator=seed), flipping(image, generator=seed)
        if torch.equal(out, base.flip(-1)) and not torch.equal(out, base):
            flipped += 1
        else:
            assert torch.equal(out, base)
    assert 0 < flipped < 12


def test_train_transform_crop_then_resize_matches_pil() -> None:
    cfg = PreprocessConfig(image_size=48, interpolation="bilinear")
    image = _photos()["rocket"]
    top, left, h, w = random_resized_crop_params(640, 427, (0.9, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(9))
    expected = image.crop((left, top, left + w, top + h)).resize((48, 48), BILINEAR)
    got = TrainTransform(cfg).augment(image, generator=9)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


def test_transforms_pickle_for_dataloader_workers() -> None:
    image = _photos()["chelsea"]
    t = ImageTransform(PreprocessConfig(image_size=32))
    assert torch.equal(pickle.loads(pickle.dumps(t))(image), t(image))
    tt = TrainTransform(PreprocessConfig(image_size=32), hflip=True, seed=4)
    copy = pickle.loads(pickle.dumps(tt))
    assert torch.equal(copy(image), tt(image))


# ----------------------------------------------------------------------------- bounded output


def _recording_resizes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Every size `Image.resize` is asked to produce from now on."""
    sizes: list[tuple[int, int]] = []
    original = Image.Image.resize

    def resize(self, size, *args, **kwargs):
        sizes.append(tuple(size))
        return original(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", resize)
    return sizes


@pytest.mark.parametrize("size", [(200_000, 1), (1, 200_000), (3, 60_000)])
def test_sliver_resize_output_is_bounded(size: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """A 200000 x 1 image made 12.8M x 64 pixels (GBs) before the crop; now only the crop is resampled."""
    sizes = _recording_resizes(monkeypatch)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    out = ImageTransform(PreprocessConfig(image_size=64))(image)
    assert out.shape == (3, 64, 64) and torch.isfinite(out).all()
    assert sizes and max(w * h for w, h in sizes) <= MAX_RESIZE_PIXELS


def test_bounded_resize_keeps_the_reference_geometry() -> None:
    """The crop-first path samples the same region with the same filter: close to the full resize."""
    y, x = np.mgrid[0:6, 0:3000]
    smooth = Image.fromarray(np.stack([x % 256, (x // 3) % 256, y * 40], -1).astype(np.uint8))
    for resample in (Image.Resampling.BICUBIC, Image.Resampling.BILINEAR):
        reference = np.asarray(center_crop(resize_shortest(smooth, 32, resample), 32), dtype=int)
        bounded = np.asarray(resize_crop_shortest(smooth, 32, resample, max_pixels=32 * 32), dtype=int)
        assert np.abs(bounded - reference).max() <= 3 and np.abs(bounded - reference).mean() < 0.5
        exact = np.asarray(resize_crop_shortest(smooth, 32, resample), dtype=int)  # within the budget: exact
        np.testing.assert_array_equal(exact, reference)
