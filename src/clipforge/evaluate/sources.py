"""Dataset sources on disk (class folders, CSV/JSONL manifests), the JSON registry and the resolver.

`resolve_dataset(spec)` turns what a user typed into a `DatasetSource`:
  * a registered name (`shapes:colour`, `digits`, anything added with `register_dataset`);
  * a `.json` registry file `{"name", "type": "folder"|"manifest", "path", "classnames", "templates"}`;
  * a folder with one sub-folder per class (or `train/`, `val/`, `test/` each holding those);
  * a `.csv`/`.tsv`/`.jsonl` manifest with an image column and a label and/or caption column.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ..data.columns import CAPTION_COLUMNS, IMAGE_COLUMNS, LABEL_COLUMNS, MANIFEST_SUFFIXES, pick_column, read_rows
from ..data.spec import parse_spec, source_name
from ..images import iter_image_files
from ..registry import DATASETS
from ..zeroshot import resolve_templates
from .datasets import SPLIT_DIRS, DatasetSource, EvalDataset, FileImages, digest, files_fingerprint
from .segmentation import MaskDataset


def folder_classname(folder: str) -> str:
    return folder.replace("_", " ").strip()


def _resolve_classnames(
    folders: Sequence[str], given: Sequence[str] | Mapping[str, str] | None, where: str
) -> list[str]:
    """Names for class folders: given as a list (sorted folder order) or a {folder: name} map, else `_`→space."""
    if given is None:
        return [folder_classname(f) for f in folders]
    if isinstance(given, Mapping):
        missing = [f for f in folders if f not in given]
        if missing:
            raise ValueError(f"{where}: classnames has no entry for folder(s) {missing[:5]}")
        return [str(given[f]) for f in folders]
    if len(given) != len(folders):
        raise ValueError(f"{where}: {len(given)} classnames for {len(folders)} class folders {list(folders)[:5]}...")
    return [str(x) for x in given]


class FolderSource(DatasetSource):
    """Image folders: `root/<class>/*.jpg`, or `root/{train,val,test}/<class>/*.jpg` for split data."""

    classnames: list[str]

    def __init__(
        self,
        root: str | Path,
        classnames: Sequence[str] | Mapping[str, str] | None = None,
        templates: Sequence[str] | str | None = None,
        name: str | None = None,
        shift_paths: Mapping[str, str | Path] | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder {str(self.root)!r} does not exist")
        subdirs = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not subdirs:
            raise ValueError(f"{self.root}: expected one sub-folder per class (or train/val/test folders)")
        if all(d.lower() in SPLIT_DIRS for d in subdirs):
            self._split_dirs = {SPLIT_DIRS[d.lower()]: self.root / d for d in subdirs}
        else:
            self._split_dirs = {"all": self.root}
        folders = sorted({p.name for d in self._split_dirs.values() for p in d.iterdir() if p.is_dir()})
        if not folders:
            raise ValueError(f"{self.root}: the split folders contain no class sub-folders")
        self.folders = folders
        self.classnames = _resolve_classnames(folders, classnames, str(self.root))
        self.templates = resolve_templates(templates) if templates is not None else None
        self.name = name or self.root.name
        self._shift_paths = {k: Path(v) for k, v in (shift_paths or {}).items()}

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self._split_dirs)

    @property
    def shifts(self) -> tuple[str, ...]:
        return tuple(self._shift_paths)

    def _load(self, split: str, shift: str | None, max_samples: int | None = None) -> EvalDataset:
        base = self._split_dirs[split] if shift is None else self._shift_root(shift)
        paths: list[Path] = []
        labels: list[int] = []
        for k, folder in enumerate(self.folders):
            d = base / folder
            if d.is_dir():
                found = iter_image_files(d)
                paths += found
                labels += [k] * len(found)
        if not paths:
            raise ValueError(f"{base}: no images found in the class folders")
        return EvalDataset(
            name=self.name,
            split=split,
            images=FileImages(tuple(paths)),
            shift=shift,
            fingerprint=digest("folder", files_fingerprint(paths), self.classnames, labels),
            labels=np.asarray(labels),
            classnames=list(self.classnames),
            templates=self.templates,
        )

    def _shift_root(self, shift: str) -> Path:
        root = self._shift_paths[shift]
        if not root.is_dir():
            raise FileNotFoundError(f"shift {shift!r}: folder {str(root)!r} does not exist")
        return root


@dataclass
class _Manifest:
    paths: list[Path]
    labels: list[str | None]
    captions: list[list[str]]
    splits: list[str]


class ManifestSource(DatasetSource):
    """CSV/TSV/JSONL rows of (image path, label and/or caption[, split]); paths are relative to the file.

    Rows naming the same image are merged: their captions all belong to it (a JSONL caption may also be
    a list). Labels are class names (or indices into `classnames`). A `split` column makes splits.
    """

    def __init__(
        self,
        path: str | Path,
        image_column: str | None = None,
        label_column: str | None = None,
        caption_column: str | None = None,
        split_column: str | None = "split",
        classnames: Sequence[str] | None = None,
        templates: Sequence[str] | str | None = None,
        name: str | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"manifest {str(self.path)!r} does not exist")
        rows, columns = read_rows(self.path)
        if not rows:
            raise ValueError(f"{self.path}: the manifest has no rows")
        image_col = pick_column(columns, image_column, IMAGE_COLUMNS, self.path, "image")
        if image_col is None:
            raise ValueError(
                f"{self.path}: no image column (tried {', '.join(IMAGE_COLUMNS)}); the columns are {columns}"
            )
        label_col = pick_column(columns, label_column, LABEL_COLUMNS, self.path, "label")
        caption_col = pick_column(columns, caption_column, CAPTION_COLUMNS, self.path, "caption")
        if label_col is None and caption_col is None:
            raise ValueError(
                f"{self.path}: needs a label column ({', '.join(LABEL_COLUMNS)}) or a caption column "
                f"({', '.join(CAPTION_COLUMNS)}); the columns are {columns}"
            )
        split_col = split_column if split_column in columns else None
        self.name = name or self.path.stem
        self.columns = {"image": image_col, "label": label_col, "caption": caption_col, "split": split_col}
        self._data = self._group(rows, image_col, label_col, caption_col, split_col)
        self.templates = resolve_templates(templates) if templates is not None else None
        self.classnames, self._label_ids = (None, None)
        if label_col is not None:
            self.classnames, self._label_ids = self._parse_labels(classnames)

    def _group(self, rows, image_col, label_col, caption_col, split_col) -> _Manifest:
        index: dict[str, int] = {}
        data = _Manifest([], [], [], [])
        for rowno, row in enumerate(rows, 2 if self.path.suffix.lower() != ".jsonl" else 1):
            raw = row.get(image_col)
            if raw is None or str(raw).strip() == "":
                raise ValueError(f"{self.path}: row {rowno}: empty {image_col!r}")
            key = str(raw).strip()
            label = None if label_col is None else row.get(label_col)
            if key not in index:
                index[key] = len(data.paths)
                p = Path(key)
                data.paths.append(p if p.is_absolute() else self.path.parent / p)
                data.labels.append(None if label is None else str(label).strip())
                data.captions.append([])
                data.splits.append(str(row.get(split_col, "")).strip() if split_col else "all")
            elif label is not None and data.labels[index[key]] != str(label).strip():
                raise ValueError(f"{self.path}: row {rowno}: image {key!r} has two labels")
            if caption_col is not None:
                value = row.get(caption_col)
                texts = value if isinstance(value, list) else [value]
                data.captions[index[key]].extend(str(t) for t in texts if t is not None and str(t).strip())
        return data

    def _parse_labels(self, classnames: Sequence[str] | None) -> tuple[list[str], list[int]]:
        col = self.columns["label"]
        values = self._data.labels
        if classnames is None:
            given = [v for v in values if v is not None and v != ""]
            if len(given) != len(values):
                raise ValueError(f"{self.path}: empty {col!r} value(s)")
            distinct = {folder_classname(v) for v in given}
            numeric = all(n.lstrip("-").isdigit() for n in distinct)
            names = sorted(distinct, key=(lambda n: int(n)) if numeric else None)  # "2" before "10"
            lookup = {n: i for i, n in enumerate(names)}
            return names, [lookup[folder_classname(v)] for v in given]
        names = [str(c) for c in classnames]
        lookup = {n: i for i, n in enumerate(names)}
        ids = []
        for v in values:
            if v in lookup:
                ids.append(lookup[v])
            elif v is not None and folder_classname(v) in lookup:
                ids.append(lookup[folder_classname(v)])
            elif v is not None and v.lstrip("-").isdigit() and 0 <= int(v) < len(names):
                ids.append(int(v))
            else:
                raise ValueError(
                    f"{self.path}: {col!r} value {v!r} is neither a class name nor an index < {len(names)}"
                )
        return names, ids

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self._data.splits))

    def _load(self, split: str, shift: str | None, max_samples: int | None = None) -> EvalDataset:
        keep = [i for i, s in enumerate(self._data.splits) if s == split]
        paths = [self._data.paths[i] for i in keep]
        labels = None if self._label_ids is None else np.asarray([self._label_ids[i] for i in keep])
        captions, owner = None, None
        if self.columns["caption"] is not None:
            captions = [c for i in keep for c in self._data.captions[i]]
            owner = np.asarray([j for j, i in enumerate(keep) for _ in self._data.captions[i]], np.int64)
        return EvalDataset(
            name=self.name,
            split=split,
            images=FileImages(tuple(paths)),
            fingerprint=digest(
                "manifest", files_fingerprint(paths), self.classnames, None if labels is None else labels, captions
            ),
            labels=labels,
            classnames=None if labels is None else list(self.classnames or []),
            templates=self.templates,
            captions=captions,
            caption_image=owner,
        )


# -- registry -------------------------------------------------------------------------------------

SourceFactory = Callable[[str], DatasetSource]


def register_dataset(prefix: str, factory: SourceFactory) -> None:
    """Make `--dataset PREFIX` and `--dataset PREFIX:...` resolve through `factory(spec)`."""
    DATASETS.register(prefix, factory)


def registered_datasets() -> list[str]:
    return sorted(DATASETS.list())


def load_registry_file(path: str | Path) -> DatasetSource:
    """A dataset described by a JSON file: name, type (folder|manifest), path, classnames, templates, ..."""
    path = Path(path)
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: expected a JSON object with name, type, path, classnames, templates")
    kind = entry.get("type")
    if kind is None and {"images", "annotations", "categories"} <= set(entry):
        return MaskDataset(str(path))  # a COCO annotation file: images and their masks
    if kind not in ("folder", "manifest"):
        raise ValueError(f"{path}: field 'type' must be 'folder' or 'manifest', got {kind!r}")
    if not entry.get("path"):
        raise ValueError(f"{path}: field 'path' is missing")
    known = {
        "name",
        "type",
        "path",
        "classnames",
        "templates",
        "image_column",
        "label_column",
        "caption_column",
        "split_column",
        "shifts",
        "description",
    }
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ValueError(f"{path}: unknown field(s) {unknown}; known: {sorted(known)}")

    def rel(p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else path.parent / q

    name = entry.get("name") or path.stem
    common = dict(classnames=entry.get("classnames"), templates=entry.get("templates"), name=name)
    if kind == "folder":
        shifts = {k: rel(v) for k, v in (entry.get("shifts") or {}).items()}
        return FolderSource(rel(entry["path"]), shift_paths=shifts, **common)
    if entry.get("shifts"):
        raise ValueError(f"{path}: 'shifts' is supported for folder datasets only")
    return ManifestSource(
        rel(entry["path"]),
        image_column=entry.get("image_column"),
        label_column=entry.get("label_column"),
        caption_column=entry.get("caption_column"),
        split_column=entry.get("split_column", "split"),
        **common,
    )


def resolve_dataset(spec: str | Path | DatasetSource) -> DatasetSource:
    """A registered name, a registry JSON, a class-folder tree, a manifest or a mask set → its DatasetSource."""
    if isinstance(spec, DatasetSource):
        return spec
    text = str(spec)
    prefix = source_name(text)
    if prefix in DATASETS and not Path(text).exists():
        return DATASETS.create(prefix, text)
    path = Path(text).expanduser()
    if path.is_dir() and (path / "images").is_dir() and (path / "masks").is_dir():
        return MaskDataset(text)
    if path.is_dir():
        return FolderSource(path)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".json":
            return load_registry_file(path)
        if suffix in MANIFEST_SUFFIXES:
            return ManifestSource(path)
        raise ValueError(f"{path}: unsupported dataset file; expected .json (registry), .csv, .tsv, .jsonl or .parquet")
    coco = Path(parse_spec(text).source).expanduser()
    if coco.suffix.lower() == ".json" and coco.is_file():
        return MaskDataset(text)  # PATH.json::images=DIR, a COCO annotation file and its image folder
    raise FileNotFoundError(
        f"dataset {text!r}: not a registered dataset ({', '.join(registered_datasets())}) nor an existing path"
    )
