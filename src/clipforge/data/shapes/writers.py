"""Materialising a shapes world to disk: a CSV of captions, webdataset shards, image + mask folders."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from PIL import Image

from .attributes import MASK_CLASSES, Sample
from .world import ShapesWorld

CSV_COLUMNS = (
    "filepath",
    "caption",
    "index",
    "split",
    "seed",
    "shift",
    "n_objects",
    "shapes",
    "colours",
    "sizes",
    "positions",
    "styles",
    "background",
    "heldout",
    "variety",
    "renderers",
    "style_heldout",
)


def _flat_record(sample: Sample) -> dict[str, Any]:
    """Scalar attribute columns; multi-object values are joined with ';'."""
    a, objs = sample.attributes, sample.objects
    return {
        "caption": sample.caption,
        "index": a["index"],
        "split": a["split"],
        "seed": a["seed"],
        "shift": a["shift"] or "",
        "n_objects": a["n_objects"],
        "shapes": ";".join(o.shape for o in objs),
        "colours": ";".join(o.colour for o in objs),
        "sizes": ";".join(o.size for o in objs),
        "positions": ";".join(o.position for o in objs),
        "styles": ";".join(o.style for o in objs),
        "background": sample.background,
        "heldout": int(a["heldout"]),
        "variety": a["variety"],
        "renderers": ";".join(o.renderer for o in objs),
        "style_heldout": int(a["style_heldout"]),
    }


def _json_record(sample: Sample) -> dict[str, Any]:
    return {
        "caption": sample.caption,
        "background": sample.background,
        "objects": [asdict(o) for o in sample.objects],
        "attributes": sample.attributes,
    }


def _key_width(n: int) -> int:
    return max(6, len(str(max(n - 1, 0))))


def write_csv_dataset(world: ShapesWorld, out_dir: str | Path, n: int | None = None) -> Path:
    """Write ``images/000000.png ...`` and ``captions.csv``; return the CSV path.

    ``filepath`` is relative to ``out_dir``; other columns are in :data:`CSV_COLUMNS`.
    """
    n = len(world) if n is None else n
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    width = _key_width(n)
    csv_path = out / "captions.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for i in range(n):
            sample = world.sample(i)
            rel = f"images/{i:0{width}d}.png"
            sample.image.save(out / rel)
            writer.writerow({"filepath": rel, **_flat_record(sample)})
    return csv_path


def _add_member(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(payload), 0o644, 0  # fixed mtime: reproducible bytes
    tar.addfile(info, io.BytesIO(payload))


def write_webdataset(
    world: ShapesWorld, out_dir: str | Path, n: int | None = None, shard_size: int = 1000
) -> list[Path]:
    """Write ``shard-000000.tar ...`` with ``KEY.png``/``KEY.txt``/``KEY.json`` members.

    Keys are zero-padded sample indices; returns the shard paths in order.
    """
    if shard_size < 1:
        raise ValueError("shard_size must be >= 1")
    n = len(world) if n is None else n
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    width, paths = _key_width(n), []
    for shard, start in enumerate(range(0, n, shard_size)):
        path = out / f"shard-{shard:06d}.tar"
        with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(start, min(n, start + shard_size)):
                sample, key = world.sample(i), f"{i:0{width}d}"
                png = io.BytesIO()
                sample.image.save(png, format="PNG")
                _add_member(tar, f"{key}.png", png.getvalue())
                _add_member(tar, f"{key}.txt", sample.caption.encode("utf-8"))
                _add_member(tar, f"{key}.json", json.dumps(_json_record(sample)).encode("utf-8"))
        paths.append(path)
    return paths


def write_mask_dataset(world: ShapesWorld, out_dir: str | Path, n: int | None = None) -> Path:
    """Write ``images/KEY.png``, ``masks/KEY.png`` (class indices), ``instances/KEY.png`` and
    ``classes.txt`` (one class name per line, line k = mask value k); return ``out_dir``.

    This is the folder layout :class:`clipforge.data.masks.FolderMasks` reads, so a user's
    own segmentation data can be laid out the same way.
    """
    n = len(world) if n is None else n
    out = Path(out_dir)
    for sub in ("images", "masks", "instances"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    width = _key_width(n)
    for i in range(n):
        sample, key = world.sample(i), f"{i:0{width}d}"
        sample.image.save(out / "images" / f"{key}.png")
        Image.fromarray(sample.class_mask, "L").save(out / "masks" / f"{key}.png")
        Image.fromarray(sample.instance_mask, "L").save(out / "instances" / f"{key}.png")
    (out / "classes.txt").write_text("\n".join(MASK_CLASSES) + "\n", encoding="utf-8")
    return out
