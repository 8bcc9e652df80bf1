"""A bounded load test of a running service (loopback or your own hosts only).

    python -m clipforge.serve.loadtest http://127.0.0.1:8000 --requests 200 --concurrency 8
    python -m clipforge.serve.loadtest http://127.0.0.1:8000 --seconds 30 --concurrency 8

Sends requests mixing every endpoint (text search, image search, classify, embed, thumbnail,
health; `endpoints` picks a subset) from `concurrency` threads, each with a timeout, and reports
the error count, status counts and latency percentiles. It never loops unboundedly: `requests` is
the total, or with `seconds` the clients keep sending until that many seconds have passed (and at
most `requests` requests if that is given too).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

QUERIES = ("a red circle", "a small blue square", "two green stars", "a hollow yellow triangle", "a purple heart")


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    throughput_rps: float
    by_endpoint: dict[str, dict[str, float]] = field(default_factory=dict)
    status_counts: dict[str, int] = field(default_factory=dict)  # "200", "422", ... or the exception's name
    error_examples: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.requests} requests, {self.errors} errors in {self.seconds:.1f}s "
            f"({self.throughput_rps:.1f} req/s): p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, "
            f"max {self.max_ms:.1f} ms"
        )


ENDPOINTS = ("GET /search", "POST /search", "POST /classify", "POST /embed", "GET /image", "GET /health")


def _mix(client, image: bytes, ids: list[int], endpoints: tuple[str, ...]) -> list[tuple[str, Callable[[int], Any]]]:
    """The request mix: (endpoint name, send the i-th request), keeping only `endpoints`."""
    files = lambda: {"image": ("query.jpg", image, "image/jpeg")}  # noqa: E731
    mix: list[tuple[str, Callable[[int], Any]]] = [
        ("GET /search", lambda i: client.get("/search", params={"text": QUERIES[i % len(QUERIES)], "k": 10})),
        ("GET /search", lambda i: client.get("/search", params={"text": QUERIES[(i + 2) % len(QUERIES)], "k": 24})),
        ("POST /search", lambda i: client.post("/search", files=files(), data={"k": "12"})),
        ("POST /classify", lambda i: client.post("/classify", files=files(), data={"labels": "circle,square,star"})),
        ("POST /embed", lambda i: client.post("/embed", json={"texts": list(QUERIES[: 1 + i % 4])})),
        ("GET /image", lambda i: client.get(f"/image/{ids[i % len(ids)]}")),
        ("GET /search", lambda i: client.get("/search", params={"text": QUERIES[(i + 4) % len(QUERIES)]})),
        ("GET /health", lambda i: client.get("/health")),
    ]
    unknown = set(endpoints) - set(ENDPOINTS)
    if unknown or not endpoints:
        raise ValueError(f"endpoints {sorted(unknown)}: expected some of {', '.join(ENDPOINTS)}")
    return [m for m in mix if m[0] in endpoints]


def run_load(
    base_url: str,
    requests: int | None = 200,
    concurrency: int = 8,
    timeout: float = 30.0,
    seconds: float | None = None,
    endpoints: tuple[str, ...] = ENDPOINTS,
) -> LoadResult:
    """Send `requests` requests (or, with `seconds`, keep sending for that long) with `concurrency`
    workers over the `endpoints` mix; every request has `timeout` seconds."""
    import httpx  # optional (a test dependency): only the load test is an HTTP client

    if requests is None and seconds is None:
        raise ValueError("give requests, seconds or both: the load test is bounded")
    if (requests is not None and requests < 1) or concurrency < 1 or (seconds is not None and seconds <= 0):
        raise ValueError("requests, concurrency and seconds must be positive")
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(base_url=base_url, timeout=timeout, limits=limits) as client:
        found = client.get("/search", params={"text": "a shape", "k": 20})
        found.raise_for_status()
        ids = [hit["id"] for hit in found.json()["results"]]
        image = client.get(f"/image/{ids[0]}").content  # query with an image the index holds
        mix = _mix(client, image, ids, tuple(endpoints))
        counter, lock = itertools.count(), threading.Lock()
        done: list[tuple[str, float, str, str | None]] = []  # (endpoint, ms, status, error)

        def worker(deadline: float) -> None:
            while True:
                with lock:
                    i = next(counter)
                if (requests is not None and i >= requests) or time.perf_counter() >= deadline:
                    return
                name, send = mix[i % len(mix)]
                t = time.perf_counter()
                try:
                    response = send(i)
                    status = str(response.status_code)
                    err = None if response.status_code == 200 else f"{name}: HTTP {status} {response.text[:200]}"
                except Exception as exc:  # a timeout or a dropped connection counts as an error
                    status, err = type(exc).__name__, f"{name}: {type(exc).__name__}: {exc}"
                ms = (time.perf_counter() - t) * 1000
                with lock:
                    done.append((name, ms, status, err))

        start = time.perf_counter()
        deadline = start + seconds if seconds is not None else float("inf")
        with ThreadPoolExecutor(concurrency) as pool:
            for future in [pool.submit(worker, deadline) for _ in range(concurrency)]:
                future.result()
        elapsed = time.perf_counter() - start
    if not done:
        raise RuntimeError("no request completed")
    ms = np.array([d[1] for d in done])
    errors = [d[3] for d in done if d[3]]
    by: dict[str, dict[str, float]] = {}
    for name in sorted({d[0] for d in done}):
        sel = np.array([d[1] for d in done if d[0] == name])
        by[name] = {
            "n": len(sel),
            "errors": sum(1 for d in done if d[0] == name and d[3]),
            "p50_ms": round(float(np.percentile(sel, 50)), 2),
            "p99_ms": round(float(np.percentile(sel, 99)), 2),
        }
    return LoadResult(
        requests=len(done),
        errors=len(errors),
        seconds=round(elapsed, 3),
        p50_ms=round(float(np.percentile(ms, 50)), 2),
        p99_ms=round(float(np.percentile(ms, 99)), 2),
        max_ms=round(float(ms.max()), 2),
        throughput_rps=round(len(done) / elapsed, 2),
        by_endpoint=by,
        status_counts=dict(sorted(Counter(d[2] for d in done).items())),
        error_examples=errors[:5],
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", help="base URL of a running `clipforge serve`, e.g. http://127.0.0.1:8000")
    p.add_argument("--requests", type=int, default=None, help="total requests (default 200 unless --seconds)")
    p.add_argument("--seconds", type=float, default=None, help="keep sending for this many seconds")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    requests = args.requests if args.requests is not None or args.seconds is not None else 200
    result = run_load(args.url, requests, args.concurrency, args.timeout, seconds=args.seconds)
    print(json.dumps(asdict(result), indent=2) if args.json else result.summary())
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
