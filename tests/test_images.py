"""Tests for clipforge.images: safe decoding, file discovery and skip accounting."""

from __future__ import annotations

import io
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from clipforge.images import (
    DEFAULT_MAX_ASPECT_RATIO,
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    SkipLog,
    iter_image_files,
    load_image,
    printable,
    to_rgb,
    try_load_image,
)


def _photo(size: tuple[int, int] = (64, 48)) -> Image.Image:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    arr = np.stack([x * 4 % 256, y * 5 % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    arr = np.clip(arr.astype(int) + rng.integers(-10, 10, arr.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def _encode(image: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims `width` x `height` RGB pixels (a decompression-bomb header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _expect_error(source: object, *words: str, **kw: object) -> ImageDecodeError:
    with pytest.raises(ImageDecodeError) as info:
        load_image(source, **kw)  # type: ignore[arg-type]
    err = info.value
    assert isinstance(err, ValueError)
    message = str(err)
    assert message.startswith(f"cannot read image {err.source!r}: ")
    assert err.reason in message
    for word in words:
        assert word in err.reason.lower(), (word, err.reason)
    return err


# ----------------------------------------------------------------------------- failures


def test_truncated_jpeg_and_png_files(tmp_path: Path) -> None:
    for fmt, ext in (("JPEG", "jpg"), ("PNG", "png")):
        data = _encode(_photo((128, 96)), fmt)
        path = tmp_path / f"cut.{ext}"
        path.write_bytes(data[: len(data) // 2])
        err = _expect_error(path, "truncated")
        assert err.source == str(path) and str(path) in str(err)
        _expect_error(data[: len(data) - 40], "truncated")


def test_corrupt_bytes() -> None:
    data = bytearray(_encode(_photo((128, 96)), "PNG"))
    data[200:400] = bytes(200)  # zeroed compressed stream, header intact
    err = _expect_error(bytes(data))
    assert err.source == "<bytes>"
    jpeg = bytearray(_encode(_photo((128, 96)), "JPEG"))
    jpeg[len(jpeg) // 2 : len(jpeg) // 2 + 300] = b"\xff" * 300
    _expect_error(bytes(jpeg))
    _expect_error(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)


def test_empty_text_directory_missing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    _expect_error(empty, "empty")
    _expect_error(b"", "empty")
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture\n" * 10)
    assert "not a recognised image format" in _expect_error(text).reason
    _expect_error(tmp_path, "directory")
    missing = tmp_path / "nope" / "missing.png"
    err = _expect_error(missing, "no such file")
    assert str(missing) in str(err)
    _expect_error(str(missing), "no such file")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores file permissions")
def test_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "secret.png"
    path.write_bytes(_encode(_photo(), "PNG"))
    path.chmod(0)
    try:
        _expect_error(path, "permission")
    finally:
        path.chmod(0o644)


def test_decompression_bomb_header_is_refused() -> None:
    # 100000 x 100000 is far above Pillow's own hard limit: refused while reading the header.
    _expect_error(_png_header_claiming(100_000, 100_000), "too many pixels")
    # 3000 x 3000 passes Pillow's limit but not ours.
    err = _expect_error(_png_header_claiming(3000, 3000), "too many pixels", max_pixels=1_000_000)
    assert "3000x3000" in err.reason


def test_pixel_limit_checked_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    Image.new("L", (2000, 1500)).save(path)  # 3 MP, a few kB on disk
    assert path.stat().st_size < 50_000
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)

    def forbidden(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixel data was decoded")

    with monkeypatch.context() as m:
        m.setattr(ImageFile.ImageFile, "load", forbidden)
        _expect_error(path, "too many pixels", max_pixels=1_000_000)
    assert load_image(path, max_pixels=3_000_000).size == (2000, 1500)
    assert load_image(path, max_pixels=None).size == (2000, 1500)
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == before  # no global leaks
    assert DEFAULT_MAX_PIXELS == 2**27


def test_sliver_images_are_refused_from_the_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 664-byte 200000 x 1 PNG passes any pixel limit, but preprocessing would make it 12.8M x 64."""
    path = tmp_path / "sliver.png"
    Image.new("RGB", (200_000, 1)).save(path)
    assert path.stat().st_size < 1000
    with monkeypatch.context() as m:
        m.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("pixel data was decoded"))
        err = _expect_error(path, "extreme aspect ratio")
        assert err.source == str(path)
        assert "200000x1" in err.reason and f"max_aspect_ratio={DEFAULT_MAX_ASPECT_RATIO:g}" in err.reason
        _expect_error(_encode(Image.new("L", (1, 300)), "PNG"), "extreme aspect ratio", max_aspect_ratio=50)
    assert load_image(path, max_aspect_ratio=None).size == (200_000, 1)
    assert load_image(_encode(Image.new("L", (int(DEFAULT_MAX_ASPECT_RATIO) * 3, 3)), "PNG")).mode == "RGB"


def test_disallowed_format_is_refused_unless_asked() -> None:
    data = _encode(_photo(), "PCX")
    assert "not a recognised image format" in _expect_error(data).reason
    assert load_image(data, formats=None).size == (64, 48)
    assert load_image(data, formats=["PCX"]).mode == "RGB"


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about corrupt TIFF tags
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_fuzzed_files_never_leak_raw_exceptions() -> None:
    rng = np.random.default_rng(1234)
    base = _photo((40, 30))
    encoded = [_encode(base, f) for f in ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")]
    outcomes = {"ok": 0, "error": 0}
    for i in range(360):
        data = bytearray(encoded[i % len(encoded)])
        if rng.random() < 0.5:
            data = data[: int(rng.integers(1, len(data)))]
        for _ in range(int(rng.integers(1, 6))):
            pos = int(rng.integers(0, len(data)))
            data[pos] = int(rng.integers(0, 256))
        try:
            image = load_image(bytes(data), max_pixels=1_000_000)  # mutated headers can claim ~100 MP
        except ImageDecodeError:
            outcomes["error"] += 1
        else:
            assert image.mode == "RGB"
            outcomes["ok"] += 1
    assert outcomes["error"] > 50 and outcomes["ok"] > 0


def test_error_is_picklable() -> None:
    err = ImageDecodeError("a/b.jpg", "truncated file (x)")
    again = pickle.loads(pickle.dumps(err))
    assert (again.source, again.reason, str(again)) == (err.source, err.reason, str(err))
    assert str(err) == "cannot read image 'a/b.jpg': truncated file (x)"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_no_file_handles_leak(tmp_path: Path) -> None:
    gif = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    bad = tmp_path / "bad.png"
    bad.write_bytes(_encode(_photo(), "PNG")[:100])
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        load_image(gif)
        with pytest.raises(ImageDecodeError):
            load_image(bad)
    assert len(os.listdir("/proc/self/fd")) == before


# ----------------------------------------------------------------------------- colour modes


def test_sixteen_bit_grayscale_is_scaled(tmp_path: Path) -> None:
    values = np.array([[0, 255, 256, 32768, 65535, 65280]], dtype=np.uint16)
    expected = [0, 1, 1, 128, 255, 254]
    for fmt, ext in (("PNG", "png"), ("TIFF", "tif"), ("PPM", "pgm")):
        path = tmp_path / f"deep.{ext}"
        Image.fromarray(values).save(path, fmt)
        with Image.open(path) as raw:
            assert raw.mode in ("I;16", "I", "I;16B")
        rgb = np.asarray(load_image(path))
        assert rgb.shape == (1, 6, 3)
        assert rgb[0, :, 0].tolist() == expected, fmt
        assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    # Pillow's own convert clips instead (what we avoid): 32768 -> 255.
    assert np.asarray(Image.fromarray(values).convert("L"))[0, 3] == 255


def test_to_rgb_modes() -> None:
    assert np.asarray(to_rgb(Image.fromarray(np.full((2, 2), 2.0**15 * 2 - 1, np.float32))))[0, 0, 0] == 255
    assert np.asarray(to_rgb(Image.fromarray(np.array([[70000, -5]], np.int32))))[0].tolist() == [[255] * 3, [0] * 3]


def test_cmyk_jpeg() -> None:
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 0, 0))  # magenta
    image = load_image(_encode(cmyk, "JPEG"))
    assert image.mode == "RGB" and image.size == (32, 32)
    assert np.abs(np.asarray(image, int) - [255, 0, 255]).max() <= 3


def test_alpha_and_palette_modes_are_converted_like_the_reference() -> None:
    rgb = _photo()
    rgba = rgb.copy()
    alpha = np.zeros((48, 64), np.uint8)
    alpha[:, 32:] = 255
    rgba.putalpha(Image.fromarray(alpha))  # left half fully transparent
    loaded = load_image(_encode(rgba, "PNG"))
    # Alpha is dropped, not composited: hidden colours survive, exactly like .convert("RGB").
    assert np.array_equal(np.asarray(loaded), np.asarray(rgba.convert("RGB")))
    assert np.array_equal(np.asarray(loaded), np.asarray(rgb))
    la = rgb.convert("LA")
    assert np.array_equal(np.asarray(load_image(_encode(la, "PNG"))), np.asarray(la.convert("RGB")))
    palette = rgb.quantize(64)
    palette.info["transparency"] = 0
    data = _encode(palette, "PNG")
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.mode == "P" and "transparency" in raw.info
        expected = np.asarray(raw.convert("RGB"))
    assert np.array_equal(np.asarray(load_image(data)), expected)
    bilevel = rgb.convert("1")
    got = np.asarray(load_image(_encode(bilevel, "PNG")))
    assert set(np.unique(got)) <= {0, 255}
    gray = rgb.convert("L")
    got = np.asarray(load_image(_encode(gray, "PNG")))
    assert np.array_equal(got[..., 0], np.asarray(gray)) and np.array_equal(got[..., 2], np.asarray(gray))


def test_animated_gif_first_frame(tmp_path: Path) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (16, 12), c) for c in colours]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(path) as raw:
        assert raw.n_frames == 3
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (16, 12)
    assert np.asarray(image)[0, 0].tolist() == [255, 0, 0]


def test_exif_orientation_is_opt_in() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    data = _encode(_photo((40, 20)), "JPEG", exif=exif)
    assert load_image(data).size == (40, 20)  # the reference pipelines ignore EXIF
    assert load_image(data, exif_transpose=True).size == (20, 40)


def test_sources_path_str_bytes_stream(tmp_path: Path) -> None:
    image = _photo()
    path = tmp_path / "p.png"
    image.save(path)
    expected = np.asarray(image)
    for source in (path, str(path), path.read_bytes(), bytearray(path.read_bytes()), io.BytesIO(path.read_bytes())):
        assert np.array_equal(np.asarray(load_image(source)), expected)
    with open(path, "rb") as fh:
        assert np.array_equal(np.asarray(load_image(fh)), expected)
        assert not fh.closed  # a caller's stream is left open
    with open(tmp_path / "bad.jpg", "wb") as fh:
        fh.write(b"nope")
    with open(tmp_path / "bad.jpg", "rb") as fh:
        assert _expect_error(fh).source == str(tmp_path / "bad.jpg")
    assert _expect_error(io.BytesIO(b"nope")).source == "<stream>"
    with pytest.raises(TypeError):
        load_image(123)  # type: ignore[arg-type]


def test_returned_image_is_standalone(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    _photo().save(path)
    image = load_image(path)
    path.unlink()
    assert image.mode == "RGB" and image.getpixel((3, 3)) is not None
    assert image.copy().size == (64, 48)


# ----------------------------------------------------------------------------- discovery


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_iter_image_files(tmp_path: Path) -> None:
    root = tmp_path / "data"
    a = _touch(root / "b.JPG")
    b = _touch(root / "a.png")
    c = _touch(root / "sub" / "c.WebP")
    d = _touch(root / "sub" / "deeper" / "d.tiff")
    _touch(root / "notes.txt")
    _touch(root / "sub" / "e.jpeg.bak")
    other = _touch(tmp_path / "single.dat")

    found = iter_image_files([root])
    assert found == sorted([a, b, c, d])
    assert iter_image_files([root], recursive=False) == sorted([a, b])
    # explicit files are kept whatever their extension; duplicates collapse
    assert iter_image_files([other, root / "a.png", root]) == [other, b, *[p for p in sorted([a, b, c, d]) if p != b]]
    # globs: files filtered by extension, matched folders expanded
    assert iter_image_files([str(root / "*")]) == sorted([a, b]) + sorted([c, d])
    assert iter_image_files([str(root / "**" / "*.tiff")]) == [d]
    assert iter_image_files(str(root / "sub")) == sorted([c, d])


def test_iter_image_files_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        iter_image_files([tmp_path / "nothing-here"])
    with pytest.raises(FileNotFoundError, match="zzz"):
        iter_image_files([str(tmp_path / "*.zzz")])


# ----------------------------------------------------------------------------- skip log


def test_skip_log(tmp_path: Path) -> None:
    log = SkipLog(max_items=2)
    assert log.count == 0 and log.summary() == "skipped 0 items"
    good = tmp_path / "good.png"
    _photo().save(good)
    bad = _touch(tmp_path / "bad.jpg", b"not an image")
    cut = _touch(tmp_path / "cut.png", _encode(_photo(), "PNG")[:120])
    images = [try_load_image(p, log) for p in (good, bad, cut, tmp_path / "gone.png")]
    assert [im is not None for im in images] == [True, False, False, False]
    log.add("x.jpg", RuntimeError("boom"))
    assert log.count == len(log) == 4
    assert len(log.items) == 2 and log.items[0][0] == str(bad)
    assert log.by_reason["no such file"] == 1 and log.by_reason["truncated file"] == 1
    summary = log.summary()
    assert summary.startswith("skipped 4 items:") and "1 x truncated file" in summary and str(bad) in summary
    other = SkipLog()
    other.add("y.png", "empty file (0 bytes)")
    log.merge(other)
    assert log.count == 5 and log.by_reason["empty file"] == 1 and len(log.items) == 2


# ----------------------------------------------------------------------------- odd directory entries


def _within(seconds: float, fn, *args, **kwargs):
    """`fn(*args, **kwargs)` in a thread; fail (rather than hang the suite) if it blocks."""
    import threading

    result: dict[str, object] = {}

    def target() -> None:
        try:
            result["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{getattr(fn, '__name__', fn)} blocked for {seconds}s"
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result.get("value")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and symbolic links")
def test_odd_entries_are_never_opened_but_skipped_and_counted(tmp_path: Path) -> None:
    """A FIFO named x.jpg hung every batch command; a symbolic link loop aborted `index build`."""
    root = tmp_path / "data"
    good = _touch(root / "good.png", _encode(_photo(), "PNG"))
    os.mkfifo(root / "x.jpg")
    (root / "loop1.jpg").symlink_to("loop2.jpg")
    (root / "loop2.jpg").symlink_to("loop1.jpg")
    (root / "gone.png").symlink_to("nowhere.png")
    (root / "zero.png").symlink_to("/dev/zero")
    (root / "dir.png").mkdir()
    (root / "linked").symlink_to(root)  # a link to a folder is not followed (no cycle)

    skipped = SkipLog()
    assert _within(10, iter_image_files, [root], skipped=skipped) == [good]
    reasons = {Path(name).name: reason for name, reason in skipped.items}
    assert reasons == {
        "x.jpg": "not a regular file (FIFO)",
        "loop1.jpg": "symbolic link loop",
        "loop2.jpg": "symbolic link loop",
        "gone.png": "broken symbolic link",
        "zero.png": "not a regular file (character device)",
    }
    assert all(Path(name).is_absolute() for name, _ in skipped.items) and skipped.count == 5
    assert _within(10, iter_image_files, [root], recursive=False) == [good]  # without a log: left out
    with pytest.raises(ValueError, match="FIFO"):
        iter_image_files([root / "x.jpg"])  # named explicitly, no log: an error naming it
    named = SkipLog()
    assert iter_image_files([root / "x.jpg", root / "loop1.jpg", good], skipped=named) == [good]
    assert named.count == 2
    # And should one reach the decoder anyway (a manifest row, a file replaced after listing):
    for name, reason in (("x.jpg", "not a regular file (fifo)"), ("loop1.jpg", "symbolic link loop"),
                         ("zero.png", "character device"), ("gone.png", "broken symbolic link")):
        _within(10, _expect_error, root / name, reason)


def test_printable_names_and_skip_logs() -> None:
    """A non-UTF-8 file name reached the CSV writers as surrogates and failed them after all the work."""
    name = os.fsdecode(b"caf\xe9.png")
    assert printable(name) == "caf\\xe9.png" and printable("\ud800x") == "\\ud800x" and printable("ok é") == "ok é"
    log = SkipLog()
    log.add(name, "file name is not valid UTF-8")
    assert log.items == [("caf\\xe9.png", "file name is not valid UTF-8")]
    log.items[0][0].encode("utf-8")


def test_unlistable_folders_are_counted_not_silently_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data"
    good = _touch(root / "a.png")
    _touch(root / "locked" / "b.png")
    real = os.scandir

    def scandir(path):  # as chmod 000 would do for anyone but root
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    skipped = SkipLog()
    assert iter_image_files([root], skipped=skipped) == [good]
    assert skipped.items == [(str(root / "locked"), "cannot list folder (Permission denied)")]
