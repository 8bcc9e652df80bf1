"""The standing hostile-input corpus: bad images, file names and manifests, run through the CLI.

The corpus is generated here (nothing is downloaded): images that decode to something huge or not at
all, directory entries that are not regular files, names no UTF-8 output can hold, manifests that
point at all of those. `embed`, `classify` and `index build` run on it through `clipforge.cli.main`,
and every run must

* finish without a traceback (and without hanging: each test runs under an alarm),
* skip each bad entry and count it, by name, with the expected reason,
* embed each good image exactly as it is embedded alone,
* stay within a bounded peak memory (measured in this process: decoding runs in-process here).
"""

from __future__ import annotations

import csv
import io
import json
import os
import resource
import shutil
import signal
import struct
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipforge.cli.main import main

pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or not hasattr(os, "mkfifo"), reason="needs FIFOs, symbolic links and /dev/zero"
)

PEAK_MEMORY_BOUND = 400 * 2**20  # bytes of extra peak RSS the whole corpus may cost (the tiny model's n is 32)


@pytest.fixture(autouse=True)
def alarm():
    """Fail a test that blocks (a FIFO opened for reading waits forever for a writer) instead of hanging."""

    def expired(signum, frame):
        raise TimeoutError("the command blocked (alarm)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _encoded(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _photo(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], -1)
    return Image.fromarray(np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8))


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@dataclass
class Corpus:
    folder: Path
    good: list[Path] = field(default_factory=list)
    bad: dict[str, str] = field(default_factory=dict)  # printable name -> a fragment of the expected reason
    manifest: Path | None = None
    manifest_good: list[Path] = field(default_factory=list)
    manifest_bad: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    root = tmp_path_factory.mktemp("hostile")
    folder = root / "photos"
    folder.mkdir()
    c = Corpus(folder)

    def good(name: str, data: bytes) -> None:
        (folder / name).write_bytes(data)
        c.good.append(folder / name)

    def bad(name: str, data: bytes | None, reason: str) -> None:
        if data is not None:
            (folder / name).write_bytes(data)
        c.bad[name] = reason

    good("red.png", _encoded(_photo(48, 40, 1), "PNG"))
    good("gray.jpg", _encoded(_photo(30, 50, 2).convert("L"), "JPEG", quality=90))
    good("panorama.png", _encoded(_photo(400, 40, 3), "PNG"))  # 10:1 is fine
    good("ünïcode.webp", _encoded(_photo(33, 33, 4), "WEBP", lossless=True))  # non-ASCII but valid UTF-8
    good("targa.tga", _encoded(_photo(20, 24, 5), "TGA"))  # .tga/.ico were silently left out of walks
    good("icon.ico", _encoded(_photo(32, 32, 6), "ICO", sizes=[(32, 32)]))

    bad("sliver.png", _encoded(Image.new("RGB", (200_000, 1)), "PNG"), "extreme aspect ratio")  # 664 bytes
    bad("tall-sliver.png", _encoded(Image.new("L", (1, 150_000)), "PNG"), "extreme aspect ratio")
    bad("bomb.png", _png_claiming(100_000, 100_000), "too many pixels")
    bad("truncated.jpg", _encoded(_photo(64, 64, 7), "JPEG")[:300], "truncated")
    bad("empty.png", b"", "empty file")
    bad("noise.jpg", np.random.default_rng(8).bytes(2000), "not a recognised image format")
    bad("notes.png", b"these are not pixels\n" * 10, "not a recognised image format")
    bad("pcx.png", _encoded(_photo(16, 16, 9), "PCX"), "not a recognised image format")  # a format not allowed
    os.mkfifo(folder / "fifo.jpg")
    bad("fifo.jpg", None, "not a regular file (FIFO)")
    (folder / "loop1.jpg").symlink_to("loop2.jpg")
    (folder / "loop2.jpg").symlink_to("loop1.jpg")
    bad("loop1.jpg", None, "symbolic link loop")
    bad("loop2.jpg", None, "symbolic link loop")
    (folder / "dangling.png").symlink_to(root / "nowhere.png")
    bad("dangling.png", None, "broken symbolic link")
    (folder / "zero.png").symlink_to("/dev/zero")
    bad("zero.png", None, "not a regular file (character device)")
    (folder / os.fsdecode(b"caf\xe9.png")).write_bytes(_encoded(_photo(20, 20, 10), "PNG"))
    bad("caf\\xe9.png", None, "not valid UTF-8")

    # A manifest pointing at good files, the odd entries above, a folder, a missing file and a NUL byte.
    c.manifest = root / "manifest.csv"
    rows = [("photos/red.png", "a red thing"), ("photos/ünïcode.webp", "unicode"), ("photos/fifo.jpg", "a pipe"),
            ("photos/loop1.jpg", "a loop"), ("photos", "a folder"), ("photos/missing.png", "ghost"),
            ("photos/sliver.png", "a sliver"), ("photos/zero.png", "zeros"), ("photos/bad\0name.png", "nul")]
    with open(c.manifest, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["filepath", "caption"])
        writer.writerows(rows)
    c.manifest_good = [folder / "red.png", folder / "ünïcode.webp"]
    c.manifest_bad = {"fifo.jpg": "FIFO", "loop1.jpg": "symbolic link loop", "photos": "is a directory",
                      "missing.png": "no such file", "sliver.png": "extreme aspect ratio",
                      "zero.png": "character device", "bad\0name.png": "invalid file name"}
    return c


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, (out + err)[-3000:]
    return code, out, err


def _check_skips(skips: list[tuple[str, str]], expected: dict[str, str]) -> None:
    """Every expected bad entry is skipped once, by name, for the expected reason; nothing else is."""
    by_name = {Path(name).name if "\0" not in name else name.rsplit("/", 1)[-1]: reason for name, reason in skips}
    assert len(skips) == len(expected), sorted(by_name)
    for name, fragment in expected.items():
        assert name in by_name, (name, sorted(by_name))
        assert fragment.lower() in by_name[name].lower(), (name, by_name[name])
    for name, _ in skips:
        name.encode("utf-8")  # every name can be written out


def _alone(capsys, model_dir: Path, image: Path, tmp: Path) -> np.ndarray:
    """The embedding of one image, embedded on its own."""
    out = tmp / f"alone-{abs(hash(str(image)))}"
    code, _, _ = _run(capsys, "embed", image, "--out", out, "--model", model_dir, "--device", "cpu")
    assert code == 0
    return np.load(out / "image_embeddings.npy")[0]


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def test_embed_skips_and_counts_every_bad_entry(corpus, model_dir, tmp_path, capsys):
    before = _peak_rss()
    out = tmp_path / "emb"
    code, stdout, _ = _run(capsys, "embed", corpus.folder, "--out", out, "--model", model_dir, "--device", "cpu")
    assert code == 0
    assert _peak_rss() - before < PEAK_MEMORY_BOUND
    with open(out / "images.csv", newline="", encoding="utf-8") as fh:
        listed = [row["path"] for row in csv.DictReader(fh)]
    with open(out / "skipped.csv", newline="", encoding="utf-8") as fh:
        skips = [(row["path"], row["reason"]) for row in csv.DictReader(fh)]
    emb = np.load(out / "image_embeddings.npy")
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(listed) == sorted(str(p) for p in corpus.good) and len(emb) == len(listed)
    assert summary["images"] == len(corpus.good) and summary["skipped"] == len(corpus.bad)
    _check_skips(skips, corpus.bad)
    assert f"skipped {len(corpus.bad)} items" in stdout
    for row, path in enumerate(listed):
        np.testing.assert_allclose(emb[row], _alone(capsys, model_dir, Path(path), tmp_path), atol=1e-6)


def test_classify_skips_and_counts_every_bad_entry(corpus, model_dir, capsys):
    code, stdout, stderr = _run(
        capsys, "classify", corpus.folder, "--labels", "red,gray", "--templates", "simple", "--json",
        "--model", model_dir, "--device", "cpu",
    )
    assert code == 0
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert sorted(r["image"] for r in rows if "predictions" in r) == sorted(str(p) for p in corpus.good)
    _check_skips([(r["image"], r["skipped"]) for r in rows if "skipped" in r], corpus.bad)
    assert f"skipped {len(corpus.bad)} items" in stderr


def test_index_build_skips_and_counts_every_bad_entry(corpus, model_dir, tmp_path, capsys):
    pytest.importorskip("faiss")
    pq = pytest.importorskip("pyarrow.parquet")
    from clipforge.index import SearchIndex

    out = tmp_path / "idx"
    argv = ("index", "build", corpus.folder, "--out", out, "--model", model_dir, "--device", "cpu", "--json")
    code, stdout, _ = _run(capsys, *argv)
    assert code == 0
    report = json.loads(stdout)
    assert report["added"] == len(corpus.good) and report["skipped"] == len(corpus.bad)
    _check_skips([tuple(item) for item in report["skipped_items"]], corpus.bad)
    manifest = json.loads((out / "index.json").read_text())
    assert manifest["skipped"] == len(corpus.bad) and manifest["count"] == len(corpus.good)
    index = SearchIndex.open(out)
    rows = pq.read_table(out / "metadata.parquet").to_pydict()
    assert sorted(rows["path"]) == sorted(str(p) for p in corpus.good) and len(index) == len(corpus.good)
    for item_id, path in zip(rows["id"], rows["path"]):
        alone = _alone(capsys, model_dir, Path(path), tmp_path)
        np.testing.assert_allclose(index.vector(item_id), alone, atol=1e-6)
    code, stdout, _ = _run(capsys, *argv)  # re-running a finished build: up to date, counts kept
    assert code == 0 and json.loads(stdout)["up_to_date"]
    assert json.loads((out / "index.json").read_text())["skipped"] == len(corpus.bad)


def test_manifest_rows_pointing_at_bad_entries_are_skipped_and_counted(corpus, model_dir, tmp_path, capsys):
    out = tmp_path / "emb"
    code, _, _ = _run(capsys, "embed", corpus.manifest, "--out", out, "--model", model_dir, "--device", "cpu")
    assert code == 0
    with open(out / "skipped.csv", newline="", encoding="utf-8") as fh:
        skips = [(row["path"], row["reason"]) for row in csv.DictReader(fh)]
    _check_skips(skips, corpus.manifest_bad)
    emb = np.load(out / "image_embeddings.npy")
    assert len(emb) == len(corpus.manifest_good)
    for row, path in enumerate(corpus.manifest_good):
        np.testing.assert_allclose(emb[row], _alone(capsys, model_dir, path, tmp_path), atol=1e-6)
    code, stdout, stderr = _run(
        capsys, "classify", corpus.manifest, "--labels", "a,b", "--json", "--model", model_dir, "--device", "cpu"
    )
    assert code == 0
    _check_skips([(r["image"], r["skipped"]) for r in map(json.loads, stdout.splitlines()) if "skipped" in r],
                 corpus.manifest_bad)


def test_broken_manifests_are_one_clear_line(corpus, model_dir, tmp_path, capsys):
    cases = {
        "no image column": ("nothing,caption\nx,y\n", "no image column"),
        "empty path": ("filepath\n\n \n", "empty"),
        "not UTF-8": (b"filepath\n\xff\xfe.png\n", "not UTF-8"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.csv"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        code, _, err = _run(capsys, "embed", path, "--out", tmp_path / "o", "--model", model_dir, "--device", "cpu")
        assert code == 2 and message in err and err.count("\n") == 1, (name, err)


def _folder_with(tmp_path: Path, odd: str) -> tuple[Path, Path]:
    folder = tmp_path / "few"
    folder.mkdir()
    (folder / "good.png").write_bytes(_encoded(_photo(40, 30, 11), "PNG"))
    if odd == "fifo":
        os.mkfifo(folder / "x.jpg")
    else:
        (folder / os.fsdecode(b"caf\xe9.png")).write_bytes(_encoded(_photo(20, 20, 12), "PNG"))
    return folder, folder / "good.png"


def test_a_fifo_hangs_no_command(model_dir, tmp_path, capsys):
    """A FIFO named x.jpg made embed, classify and index build wait forever for a writer."""
    folder, _ = _folder_with(tmp_path, "fifo")
    signal.alarm(30)
    runs = [("embed", folder, "--out", tmp_path / "e"), ("classify", folder, "--labels", "a,b")]
    if all(map(_importable, ("faiss", "pyarrow"))):
        runs.append(("index", "build", folder, "--out", tmp_path / "i", "--quiet"))
    for argv in runs:
        code, out, err = _run(capsys, *argv, "--model", model_dir, "--device", "cpu")
        assert code == 0 and "not a regular file (FIFO)" in out + err, argv


def test_a_non_utf8_name_leaves_consistent_embed_outputs(model_dir, tmp_path, capsys):
    """It made embed fail after computing, leaving N embedding rows beside fewer images.csv rows, no summary."""
    folder, good = _folder_with(tmp_path, "name")
    out = tmp_path / "e"
    code, stdout, _ = _run(capsys, "embed", folder, "--out", out, "--model", model_dir, "--device", "cpu")
    assert code == 0 and "caf\\xe9.png: file name is not valid UTF-8" in stdout
    listed = (out / "images.csv").read_text(encoding="utf-8").splitlines()[1:]
    assert listed == [f"0,{good}"] and len(np.load(out / "image_embeddings.npy")) == 1
    assert json.loads((out / "summary.json").read_text())["skipped"] == 1


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------- hostile checkpoints


class _Storage:
    """Stands for a storage in a hand-made TorchScript `data.pkl` (written as a persistent id)."""

    def __init__(self, dtype, key: str, numel) -> None:
        self.dtype, self.key, self.numel = dtype, key, numel


class _Tensor:
    def __init__(self, storage: _Storage, offset, size, stride) -> None:
        self.args = (storage, offset, size, stride, False, __import__("collections").OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class _ArchivePickler(__import__("pickle").Pickler):
    def persistent_id(self, obj):
        return ("storage", obj.dtype, obj.key, "cpu", obj.numel) if isinstance(obj, _Storage) else None


def _torchscript(path: Path, tensor: _Tensor, data: bytes, compress: bool = False) -> Path:
    """A TorchScript-looking archive whose one tensor is `tensor` over the storage bytes `data`."""
    import zipfile

    buf = io.BytesIO()
    _ArchivePickler(buf, protocol=2).dump({"weight": tensor})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/code/__torch__/m.py", "")
        zf.writestr("archive/data/0", data)
    return path


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory, model_dir) -> dict[str, tuple[Path, str]]:
    """name -> (checkpoint path, a fragment the one-line error must contain)."""
    import clipforge

    root = tmp_path_factory.mktemp("bad-ckpts")
    model = clipforge.load(model_dir, device="cpu", backend="none")[0]
    cases: dict[str, tuple[Path, str]] = {}

    def hf(name: str, edit, fragment: str) -> None:
        d = root / name
        clipforge.checkpoints.export(model, d, "hf")
        text = (d / "config.json").read_text()
        result = edit(d, json.loads(text))
        if isinstance(result, str):  # raw text, written as latin-1 so that undecodable bytes survive
            (d / "config.json").write_bytes(result.encode("latin-1", "strict") if "\xff" in result else result.encode())
        elif result is not None:
            (d / "config.json").write_text(json.dumps(result))
        cases[name] = (d, fragment)

    def vision(**kw):
        return lambda d, cfg: {**cfg, "vision_config": {**cfg["vision_config"], **kw}}

    hf("hf-deep", lambda d, cfg: '{"a": ' * 100_000 + "1" + "}" * 100_000, "nested too deeply")
    hf("hf-200000-layers", vision(num_hidden_layers=200_000), "block counts differ")
    huge = vision(hidden_size=65_536, num_attention_heads=64, intermediate_size=262_144)
    hf("hf-huge-width", huge, "shape mismatches")
    hf("hf-width-string", vision(hidden_size="64"), "must be a positive integer")
    hf("hf-width-zero", vision(hidden_size=0), "must be a positive integer")
    hf("hf-not-utf8", lambda d, cfg: b'{"model_type": "clip\xff"}'.decode("latin-1"), "not valid JSON")

    def escape(d, cfg):
        (d / "model.safetensors").rename(root / "outside.safetensors")
        (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "../outside.safetensors"}}))

    hf("hf-weight-map-escape", escape, "shards must be files in")

    def native(name: str, config, fragment: str) -> None:
        d = root / name
        shutil.copytree(model_dir, d)
        (d / "config.json").write_text(json.dumps(config(json.loads((d / "config.json").read_text()))))
        cases[name] = (d, fragment)

    native("native-no-model", lambda cfg: {k: v for k, v in cfg.items() if k != "model"}, "under 'model'")
    native("native-width-string",
           lambda cfg: {**cfg, "model": {**cfg["model"], "vision": {**cfg["model"]["vision"], "width": "x"}}},
           "vision.width must be a positive integer")
    native("native-unknown-field",
           lambda cfg: {**cfg, "model": {**cfg["model"], "text": {**cfg["model"]["text"], "depth": 3}}},
           "unknown text config field")

    sd = clipforge.checkpoints.openai.native_to_openai(model.state_dict())
    for name, change, fragment in (("nan", lambda t: t * float("nan"), "NaN or infinite"),
                                   ("bool", lambda t: t > 0, "non-float tensors"),
                                   ("int8", lambda t: t.to(torch.int8), "non-float tensors")):
        torch.save({**sd, "visual.ln_post.weight": change(sd["visual.ln_post.weight"])}, root / f"{name}.pt")
        cases[f"{name}-tensor"] = (root / f"{name}.pt", fragment)

    four = struct.pack("<4f", 1, 2, 3, 4)
    cases["ts-bad-dtype"] = (_torchscript(root / "bad-dtype.pt", _Tensor(_Storage("float", "0", 4), 0, (4,), (1,)),
                                          four), "unsupported dtype")
    cases["ts-out-of-bounds"] = (
        _torchscript(root / "oob.pt", _Tensor(_Storage(torch.FloatStorage, "0", 4), 2, (1000,), (7,)), four),
        "reaches past its storage",
    )
    cases["ts-short-storage"] = (
        _torchscript(root / "short.pt", _Tensor(_Storage(torch.FloatStorage, "0", 10**6), 0, (4,), (1,)), four),
        "holds 16 bytes",
    )
    cases["ts-zip-bomb"] = (
        _torchscript(root / "bomb.pt", _Tensor(_Storage(torch.FloatStorage, "0", 4), 0, (4,), (1,)),
                     bytes(50 * 2**20), compress=True),
        "zip bomb",
    )
    (root / "garbage.pt").write_bytes(b"PK\x03\x04" + bytes(200))
    cases["not-a-zip"] = (root / "garbage.pt", "not a readable")
    return cases


def test_hostile_checkpoints_are_one_clear_line_in_info_convert_and_load(bad_checkpoints, tmp_path, capsys):
    """Deep configs, wrong types, lying sizes, escaping shard names, bad tensors, bad TorchScript storages and
    a zip bomb: each one line naming the file and the problem, no traceback, little memory."""
    import clipforge
    from clipforge.checkpoints import CheckpointError

    before = _peak_rss()
    for name, (path, fragment) in bad_checkpoints.items():
        for argv in (("info", path), ("convert", path, tmp_path / f"{name}-out", "--to", "native")):
            code, _, err = _run(capsys, *argv)
            assert code == 2 and err.count("\n") == 1, (name, argv[0], err)
            assert fragment in err and str(path) in err, (name, argv[0], err)
        with pytest.raises(CheckpointError, match=fragment.replace("(", r"\(")):
            clipforge.load(path, device="cpu")
    assert _peak_rss() - before < PEAK_MEMORY_BOUND
