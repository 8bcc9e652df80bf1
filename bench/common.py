"""Shared benchmark helpers: machine facts, load, peak-memory sampling, interleaved timing, JSON out.

Import with `sys.path.insert(0, str(Path(__file__).parent))` from a bench script. Only the standard
library and torch (optional) are used, so a child process in another virtualenv can import it too.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

RESULTS_DIR = Path(__file__).parent / "results"
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE / 2**20
    except (OSError, IndexError, ValueError):
        return 0.0


def release_free_memory() -> None:
    """Return freed heap pages to the OS (glibc malloc_trim) so RSS rises measure real working memory."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine_info() -> dict[str, Any]:
    """CPU model, cores, Python/torch versions and the thread count in use."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cores": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read()
        info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "")
        flags = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
        info["cpu_flags"] = sorted({f for f in flags.split() if f.startswith(("avx512", "amx"))})
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


class PeakRSS:
    """Samples RSS in a background thread: `peak_mb` and `delta_mb` (peak over the RSS at entry)."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.start_mb = self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakRSS":
        self.start_mb = self.peak_mb = rss_mb()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb())

    @property
    def delta_mb(self) -> float:
        return self.peak_mb - self.start_mb


def timed(fn: Callable[[], Any], min_seconds: float = 0.0, max_calls: int = 200) -> tuple[float, int]:
    """Seconds per call of `fn`, calling it until `min_seconds` have passed (at least once)."""
    calls = 0
    start = time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds or calls >= max_calls:
            return elapsed / calls, calls


@dataclass
class Series:
    """Repeated measurements of one (implementation, task, batch) cell."""

    impl: str
    task: str
    batch: int
    seconds: list[float] = field(default_factory=list)
    peak_delta_mb: float = 0.0
    peak_rss_mb: float = 0.0
    loads: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, seconds: float) -> None:
        self.seconds.append(seconds)
        load = load_average()
        if load:
            self.loads.append(load[0])

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    @property
    def per_second(self) -> float:
        return self.batch / self.median if self.seconds else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "impl": self.impl,
            "task": self.task,
            "batch": self.batch,
            "median_s": round(self.median, 6),
            "per_s": round(self.per_second, 3),
            "seconds": [round(s, 6) for s in self.seconds],
            "peak_delta_mb": round(self.peak_delta_mb, 1),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "load1_median": round(statistics.median(self.loads), 2) if self.loads else None,
            **self.extra,
        }


def interleave(order: Iterable[str], repeats: int) -> list[tuple[int, str]]:
    """(round, name) pairs A B C A B C ...: load spikes hit every implementation alike."""
    names = list(order)
    return [(r, n) for r in range(repeats) for n in names]


def write_json(data: dict[str, Any], name: str, directory: Path = RESULTS_DIR) -> Path:
    """Write `data` to `directory/name` atomically (tmp file + rename) and return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
    return path


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def replace_doc_section(path: str | Path, marker: str, text: str) -> None:
    """Replace what lies between `<!-- MARKER:start -->` and `<!-- MARKER:end -->` in a Markdown file
    (how each results script regenerates its table in docs/)."""
    path = Path(path)
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    body = path.read_text(encoding="utf-8")
    if start not in body or end not in body:
        raise SystemExit(f"{path}: missing the {start} / {end} markers")
    head, rest = body.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{text}\n{end}{tail}", encoding="utf-8")

