"""Batch inference over many files: decode in worker processes, skip and count bad images, embed.

Used by `clipforge embed`, `clipforge classify` and anything else that walks a corpus.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .images import ImageDecodeError, SkipLog, iter_image_files, load_image


class _ImageFiles(Dataset):
    """Decodes and preprocesses one file per item; failures become (index, None, reason)."""

    def __init__(self, paths: Sequence[Path], preprocess: Callable) -> None:
        self.paths = list(paths)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str]:
        try:
            return i, self.preprocess(load_image(self.paths[i])), ""
        except ImageDecodeError as exc:
            return i, None, exc.reason
        except Exception as exc:  # a preprocessing failure must not abort a million-image run
            return i, None, f"preprocessing failed ({type(exc).__name__}: {exc})"


def _collate(items: list[tuple[int, torch.Tensor | None, str]]):
    good = [(i, t) for i, t, _ in items if t is not None]
    bad = [(i, reason) for i, t, reason in items if t is None]
    idx = [i for i, _ in good]
    pixels = torch.stack([t for _, t in good]) if good else None
    return idx, pixels, bad


@dataclass
class ImageEmbeddings:
    """Embeddings of the images that could be read, their paths, and what was skipped."""

    features: np.ndarray
    paths: list[Path]
    skipped: SkipLog = field(default_factory=SkipLog)


@torch.no_grad()
def embed_images(
    model,
    preprocess: Callable,
    paths: Sequence[str | Path],
    batch_size: int = 64,
    num_workers: int | None = None,
    normalize: bool = True,
    progress: bool = True,
) -> ImageEmbeddings:
    """Embed image files in order; unreadable ones are skipped and recorded, never fatal."""
    paths = [Path(p) for p in paths]
    if num_workers is None:
        num_workers = 0 if len(paths) <= 2 * batch_size else 2
    loader = DataLoader(
        _ImageFiles(paths, preprocess),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
        persistent_workers=False,
    )
    device, dtype = model.device, model.dtype
    feats: list[np.ndarray] = []
    kept: list[Path] = []
    skipped = SkipLog()
    with tqdm(total=len(paths), desc="embedding images", unit="img", disable=not progress) as bar:
        for idx, pixels, bad in loader:
            for i, reason in bad:
                skipped.add(paths[i], reason)
            if pixels is not None:
                out = model.encode_image(pixels.to(device=device, dtype=dtype), normalize=normalize)
                feats.append(out.float().cpu().numpy())
                kept.extend(paths[i] for i in idx)
            bar.update(len(idx) + len(bad))
            bar.set_postfix(skipped=skipped.count)
    dim = model.config.embed_dim
    return ImageEmbeddings(np.concatenate(feats) if feats else np.zeros((0, dim), np.float32), kept, skipped)


@torch.no_grad()
def embed_texts(
    model, tokenizer, texts: Sequence[str], batch_size: int = 256, normalize: bool = True, progress: bool = True
) -> np.ndarray:
    """Embed texts in order → float32 [N, embed_dim]."""
    out: list[np.ndarray] = []
    for i in tqdm(range(0, len(texts), batch_size), desc="embedding texts", unit="batch", disable=not progress):
        tokens = tokenizer(list(texts[i : i + batch_size])).to(model.device)
        out.append(model.encode_text(tokens, normalize=normalize).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.embed_dim), np.float32)


def read_manifest_column(path: str | Path, column: str | None, candidates: Sequence[str]) -> list[str]:
    """One column of a CSV/TSV file; `column=None` picks the first of `candidates` present."""
    path = Path(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        header = reader.fieldnames or []
        name = column or next((c for c in candidates if c in header), None)
        if name is None or name not in header:
            wanted = column or " or ".join(candidates)
            raise ValueError(f"{path}: no column {wanted!r}; the header has {header}")
        return [row[name] or "" for row in reader]


def resolve_image_inputs(inputs: Sequence[str], image_column: str | None = None) -> list[Path]:
    """Folders, globs and files; a single .csv/.tsv input is read as a manifest of image paths."""
    if len(inputs) == 1 and Path(inputs[0]).suffix.lower() in (".csv", ".tsv") and Path(inputs[0]).is_file():
        manifest = Path(inputs[0])
        rows = read_manifest_column(manifest, image_column, ("filepath", "path", "image", "file"))
        return [p if p.is_absolute() else manifest.parent / p for p in map(Path, rows)]
    return iter_image_files(inputs)
