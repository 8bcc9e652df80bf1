"""Safe image decoding for large, untrusted collections of user files.

`load_image` turns any path, byte string or binary stream into a fully decoded RGB
`PIL.Image.Image`, or raises `ImageDecodeError` (a `ValueError`) naming the file and the reason.
No raw PIL/OS exception escapes it, so batch jobs can skip a corrupt file among millions and count
it with `SkipLog` instead of crashing hours in.

Colour handling follows the reference CLIP implementations (OpenAI's `_convert_image_to_rgb`
is `image.convert("RGB")`): alpha is dropped, not composited, palettes are expanded and CMYK uses
Pillow's conversion. The one deliberate deviation is 16/32-bit integer grayscale, where
`convert("RGB")` clips every value above 255 to white; we scale 0..65535 to 0..255 instead.
"""

from __future__ import annotations

import errno
import glob
import io
import os
import stat
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "DEFAULT_MAX_ASPECT_RATIO",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "SAFE_FORMATS",
    "ImageDecodeError",
    "NotRegularFileError",
    "SkipLog",
    "entry_problem",
    "iter_image_files",
    "load_image",
    "open_regular",
    "printable",
    "to_rgb",
    "try_load_image",
]

#: Default per-call pixel limit (2**27 = 134,217,728 pixels, e.g. 11585 x 11585; ~400 MB as RGB).
#: Pillow independently refuses anything above 2 * `Image.MAX_IMAGE_PIXELS` (~179 MP by default)
#: while reading the header, and warns above `Image.MAX_IMAGE_PIXELS` (~89 MP); we never change
#: that global, so a `max_pixels` larger than Pillow's hard limit has no effect beyond it.
DEFAULT_MAX_PIXELS = 2**27

#: Default limit on the ratio of an image's long side to its short side (e.g. 100 allows 10000 x 100).
#: A pixel limit alone does not bound what preprocessing makes of an image: a 664-byte 200000 x 1 PNG
#: has only 200k pixels, but resizing its short side to 64 would make it 12.8M x 64. Such slivers are
#: refused from the header, before decoding; the transforms also crop before resizing (see
#: `clipforge.transforms`), so an image that reaches them by another way is bounded too.
DEFAULT_MAX_ASPECT_RATIO = 100.0

#: File extensions `iter_image_files` picks up when expanding folders and globs (case-insensitive):
#: every format `SAFE_FORMATS` decodes.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".gif", ".webp", ".tif", ".tiff"}
    | {".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico", ".avif"}
)

#: Pillow decoders `load_image` allows by default: common raster formats only. Exotic plugins
#: (EPS runs Ghostscript, PSD/FITS/HDF5/...) are refused so arbitrary uploads cannot reach them.
SAFE_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "BMP", "DIB", "WEBP", "TIFF", "PPM", "TGA", "ICO", "AVIF")

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


class ImageDecodeError(ValueError):
    """An image could not be read; `.source` names it (a path, '<bytes>' or '<stream>'), `.reason` says why."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"cannot read image {source!r}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Keep the exception picklable (DataLoader workers send it across processes).
        return (type(self), (self.source, self.reason))


def to_rgb(image: Image.Image) -> Image.Image:
    """A new RGB copy of `image`, converted the way the reference CLIP code does (`convert("RGB")`).

    Alpha and palette transparency are dropped (not composited onto a background), matching
    OpenAI's `_convert_image_to_rgb`. Exceptions, because `convert` silently clips them to 8 bits:
    16-bit grayscale ("I;16*", and "I", which Pillow uses for 16-bit PGM/PNG data) is scaled from
    0..65535 to 0..255 with rounding (65535 -> 255, 32768 -> 128); float images ("F") are taken
    to be on a 0..255 scale and rounded/clipped.
    """
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        values = np.asarray(image).astype(np.int64)
        values = np.clip(values, 0, 65535)
        gray = ((values * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if mode == "F":
        gray = np.clip(np.rint(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    return image.convert("RGB")


def _describe(exc: BaseException) -> str:
    """A short, human reason for a decoding failure (category first, detail in parentheses)."""
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, Image.DecompressionBombError):
        return f"too many pixels, possible decompression bomb ({exc})"
    if isinstance(exc, UnidentifiedImageError):
        return "not a recognised image format (or a format not allowed here)"
    if "truncated" in str(exc).lower() or isinstance(exc, EOFError):
        return f"truncated file ({detail})"
    if isinstance(exc, MemoryError):
        return "out of memory while decoding"
    return f"corrupt or undecodable image data ({detail})"


class NotRegularFileError(OSError):
    """A path that is not a regular file (a FIFO, socket or device): reading it could block or never end."""


_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_FILE_KINDS = (
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISDIR, "directory"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _FILE_KINDS if test(mode)), "special file")


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open a regular file for binary reading, never blocking: anything else raises `NotRegularFileError`.

    The file is opened non-blocking and checked with `fstat` on the open descriptor (no race with a
    rename): a FIFO without a writer would otherwise hang the reader forever, and a device such as
    `/dev/zero` would never end. Other failures raise the usual `OSError`s.
    """
    fd = os.open(path, os.O_RDONLY | _NONBLOCK | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _kind(mode)
            code = errno.EISDIR if kind == "directory" else errno.EINVAL
            raise NotRegularFileError(code, f"not a regular file ({kind})", os.fspath(path))
        if _NONBLOCK:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def entry_problem(path: str | os.PathLike) -> str | None:
    """Why `path` cannot be read as an image file, or None for a regular file (symbolic links followed)."""
    try:
        mode = os.stat(path).st_mode
    except ValueError as exc:  # a NUL byte in the name
        return f"invalid file name ({exc})"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
        if exc.errno == errno.ENOENT and os.path.islink(path):
            return "broken symbolic link"
        if exc.errno == errno.ENOENT:
            return "no such file"
        return f"cannot stat file ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    kind = _kind(mode)
    return "is a directory, not a file" if kind == "directory" else f"not a regular file ({kind})"


def printable(name: str | os.PathLike) -> str:
    """`name` as text that any UTF-8 writer accepts: undecodable bytes of a file name become `\\xNN`."""
    text = os.fspath(name)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # lone surrogates that are not escaped bytes
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _open_path(path: Path) -> BinaryIO:
    """Open a regular file for reading, mapping OS failures to precise `ImageDecodeError` reasons."""
    name = str(path)
    try:
        stream = open_regular(path)
    except NotRegularFileError as exc:
        reason = "is a directory, not a file" if exc.errno == errno.EISDIR else exc.strerror
        raise ImageDecodeError(name, reason or "not a regular file") from None
    except FileNotFoundError:
        reason = "broken symbolic link" if os.path.islink(path) else "no such file"
        raise ImageDecodeError(name, reason) from None
    except IsADirectoryError:
        raise ImageDecodeError(name, "is a directory, not a file") from None
    except PermissionError:
        raise ImageDecodeError(name, "permission denied") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageDecodeError(name, "symbolic link loop") from None
        raise ImageDecodeError(name, f"cannot open file ({exc.strerror or exc})") from None
    except ValueError as exc:  # a NUL byte in the name
        raise ImageDecodeError(name, f"invalid file name ({exc})") from None
    try:
        empty = os.fstat(stream.fileno()).st_size == 0
    except OSError:
        empty = False
    if empty:
        stream.close()
        raise ImageDecodeError(name, "empty file (0 bytes)")
    return stream


def load_image(
    source: str | Path | bytes | bytearray | memoryview | BinaryIO,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_aspect_ratio: float | None = DEFAULT_MAX_ASPECT_RATIO,
    exif_transpose: bool = False,
    formats: Sequence[str] | None = SAFE_FORMATS,
) -> Image.Image:
    """Decode an image fully and return it as a standalone RGB image (first frame if animated).

    The header is read first and images with more than `max_pixels` pixels are refused before any
    pixel data is decoded (`None` disables this per-call check; Pillow's own global limit still
    applies); so are images whose long side is more than `max_aspect_ratio` times their short side
    (`None` disables that check; with `exif_transpose` the limit is checked on the stored size, which
    the transposition only swaps). The whole frame is then decoded with `.load()`, so truncated or corrupt files fail
    here rather than later inside a training loop. Orientation tags are ignored unless
    `exif_transpose=True`, as in the reference CLIP pipelines (malformed EXIF is then ignored).
    `formats` restricts which Pillow decoders may run (`None` allows every installed plugin).

    Raises `ImageDecodeError` for every failure: missing path, directory, empty file, unreadable,
    non-image or disallowed format, truncated/corrupt data, too many pixels, extreme aspect ratio.
    """
    owned: BinaryIO | None = None
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        if isinstance(name, bytes):
            name = os.fsdecode(name)
        owned = stream = _open_path(Path(name))
    elif isinstance(source, (bytes, bytearray, memoryview)):
        name = "<bytes>"
        if len(source) == 0:
            raise ImageDecodeError(name, "empty data (0 bytes)")
        stream = io.BytesIO(bytes(source))
    elif hasattr(source, "read"):
        raw_name = getattr(source, "name", None)
        name = raw_name if isinstance(raw_name, str) else "<stream>"
        stream = source
    else:
        raise TypeError(f"load_image expects a path, bytes or a binary stream, got {type(source).__name__}")

    allowed = None if formats is None else [f.upper() for f in formats]
    try:
        try:
            with Image.open(stream, formats=allowed) as image:
                width, height = image.size
                if max_pixels is not None and width * height > max_pixels:
                    raise ImageDecodeError(
                        name,
                        f"too many pixels, possible decompression bomb ({width}x{height} = "
                        f"{width * height} pixels > max_pixels={max_pixels})",
                    )
                _check_aspect(name, width, height, max_aspect_ratio)
                image.load()  # first frame; decodes everything so truncation is detected now
                if exif_transpose:
                    try:
                        oriented = ImageOps.exif_transpose(image)
                    except Exception:  # malformed EXIF must not make a good image unreadable
                        oriented = None
                    if oriented is not None:
                        return _checked_rgb(oriented, name)
                return _checked_rgb(image, name)
        except ImageDecodeError:
            raise
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ...
            raise ImageDecodeError(name, _describe(exc)) from exc
    finally:
        if owned is not None:
            owned.close()


def _check_aspect(name: str, width: int, height: int, limit: float | None) -> None:
    """Refuse a sliver (long side over `limit` times the short side) before decoding it."""
    if limit is None or width < 1 or height < 1:
        return
    ratio = max(width, height) / min(width, height)
    if ratio > limit:
        raise ImageDecodeError(
            name,
            f"extreme aspect ratio ({width}x{height} is {ratio:.6g}:1 > max_aspect_ratio={limit:g})",
        )


def _checked_rgb(image: Image.Image, name: str) -> Image.Image:
    try:
        return to_rgb(image)
    except Exception as exc:
        raise ImageDecodeError(name, f"unsupported colour mode {image.mode!r} ({exc})") from exc


def try_load_image(source: str | Path | bytes | BinaryIO, skips: SkipLog, **kwargs: object) -> Image.Image | None:
    """`load_image`, but a failure is recorded in `skips` and returns None (for batch loops)."""
    try:
        return load_image(source, **kwargs)  # type: ignore[arg-type]
    except ImageDecodeError as exc:
        skips.add(exc.source, exc.reason)
        return None


def _has_image_ext(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


class _Walk:
    """Collects image files; odd entries (not regular files, unlistable folders) go to `skipped`."""

    def __init__(self, recursive: bool, skipped: SkipLog | None) -> None:
        self.recursive, self.skipped = recursive, skipped

    def skip(self, path: str | Path, reason: str) -> None:
        if self.skipped is not None:
            self.skipped.add(os.path.abspath(path), reason)

    def entry(self, path: Path) -> list[Path]:
        """A file met in a folder or a glob (already known to have an image extension)."""
        problem = entry_problem(path)
        if problem is None:
            return [path]
        self.skip(path, problem)
        return []

    def folder(self, folder: Path) -> list[Path]:
        found: list[Path] = []
        pending = [folder]
        while pending:
            current = pending.pop()
            try:
                with os.scandir(current) as it:
                    entries = list(it)
            except OSError as exc:
                self.skip(current, f"cannot list folder ({exc.strerror or exc})")
                continue
            for entry in entries:
                try:
                    is_dir = entry.is_dir()  # follows symbolic links ...
                    is_link = entry.is_symlink()
                except OSError:
                    is_dir = is_link = False
                if is_dir:
                    if self.recursive and not is_link:  # ... but never descends through them (no cycles)
                        pending.append(Path(entry.path))
                    continue
                path = Path(entry.path)
                if not _has_image_ext(path):
                    continue
                try:
                    regular = entry.is_file()  # from the directory listing: no extra system call
                except OSError:
                    regular = False
                if regular:
                    found.append(path)
                else:
                    found.extend(self.entry(path))
        return sorted(found)


def iter_image_files(
    inputs: Sequence[str | Path] | str | Path, recursive: bool = True, skipped: SkipLog | None = None
) -> list[Path]:
    """Expand files, folders and glob patterns into a sorted, de-duplicated list of image paths.

    Folders contribute files with an image extension (see `IMAGE_EXTENSIONS`, any case), walked
    recursively unless `recursive=False`, sorted; symbolic links to folders are not followed. Files
    named explicitly are kept whatever their extension. Glob patterns (`*`, `?`, `[`; `**` when
    recursive) contribute matching image files and expand matching folders. A path that does not
    exist, or a pattern that matches nothing, raises FileNotFoundError naming it, so a typo cannot
    silently shrink a dataset.

    Only regular files are returned (links followed). Odd entries -- FIFOs, sockets, devices,
    broken or looping symbolic links, folders that cannot be listed -- are recorded in `skipped`
    (name and reason) when it is given, else left out; an odd entry named explicitly without a
    `skipped` log raises ValueError naming it.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    walk = _Walk(recursive, skipped)
    result: list[Path] = []
    seen: set[Path] = set()

    def add_all(paths: Iterable[Path]) -> None:
        for p in paths:
            if p not in seen:
                seen.add(p)
                result.append(p)

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            add_all(walk.folder(path))
        elif path.is_file():
            add_all([path])
        elif os.path.lexists(path):  # exists, but is no regular file or folder (even through its links)
            problem = entry_problem(path) or "not a regular file"
            if skipped is None:
                raise ValueError(f"{printable(path)!r}: {problem}")
            walk.skip(path, problem)
        elif glob.has_magic(str(item)):
            matches = sorted(glob.glob(str(item), recursive=recursive))
            if not matches:
                raise FileNotFoundError(f"no files match pattern {str(item)!r}")
            for match in map(Path, matches):
                if match.is_dir():
                    add_all(walk.folder(match))
                elif _has_image_ext(match):
                    add_all(walk.entry(match))
        else:
            raise FileNotFoundError(f"no such file or directory: {str(item)!r}")
    return result


@dataclass
class SkipLog:
    """Counts items a batch job skipped (source, reason), keeping at most `max_items` examples.

    `count` is always exact; `items` holds the first `max_items` (source, reason) pairs so memory
    stays bounded on huge runs; `by_reason` tallies the reason category (text before " (").
    """

    max_items: int = 1000
    count: int = 0
    items: list[tuple[str, str]] = field(default_factory=list)
    by_reason: Counter[str] = field(default_factory=Counter)

    def add(self, source: str | Path, reason: str | BaseException) -> None:
        """Record one skipped item; an exception is reduced to its reason."""
        if isinstance(reason, ImageDecodeError):
            text = reason.reason
        elif isinstance(reason, BaseException):
            text = f"{type(reason).__name__}: {reason}"
        else:
            text = str(reason)
        self.count += 1
        self.by_reason[text.split(" (", 1)[0]] += 1
        if len(self.items) < self.max_items:
            self.items.append((printable(source), printable(text)))

    def merge(self, other: SkipLog) -> None:
        """Fold another log (e.g. from a worker process) into this one."""
        self.count += other.count
        self.by_reason.update(other.by_reason)
        room = max(self.max_items - len(self.items), 0)
        self.items.extend(other.items[:room])

    def __len__(self) -> int:
        return self.count

    def summary(self, examples: int = 5) -> str:
        """One line per reason category with counts, then a few example items."""
        if self.count == 0:
            return "skipped 0 items"
        lines = [f"skipped {self.count} item{'s' if self.count != 1 else ''}:"]
        lines += [f"  {n} x {reason}" for reason, n in self.by_reason.most_common()]
        for source, reason in self.items[:examples]:
            lines.append(f"  e.g. {source}: {reason}")
        return "\n".join(lines)
