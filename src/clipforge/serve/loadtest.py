"""A bounded load test of a running service (loopback or your own hosts only).

    python -m clipforge.serve.loadtest http://127.0.0.1:8000 --requests 200 --concurrency 8

Sends a fixed number of requests mixing every endpoint (text search, image search, classify,
embed, thumbnail, health) from `concurrency` threads, each with a timeout, and reports the
error count and latency percentiles. It never loops unboundedly: `requests` is the total.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
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
    error_examples: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.requests} requests, {self.errors} errors in {self.seconds:.1f}s "
            f"({self.throughput_rps:.1f} req/s): p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, "
            f"max {self.max_ms:.1f} ms"
        )


def _requests(client, image: bytes, ids: list[int], n: int) -> list[tuple[str, Callable[[], Any]]]:
    """`n` request thunks cycling through a fixed mix of endpoints."""
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
    return [(mix[i % len(mix)][0], (lambda f, i: lambda: f(i))(mix[i % len(mix)][1], i)) for i in range(n)]


def run_load(base_url: str, requests: int = 200, concurrency: int = 8, timeout: float = 30.0) -> LoadResult:
    """Send `requests` requests with `concurrency` workers; every request has `timeout` seconds."""
    import httpx  # optional (a test dependency): only the load test is an HTTP client

    if requests < 1 or concurrency < 1:
        raise ValueError("requests and concurrency must be at least 1")
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(base_url=base_url, timeout=timeout, limits=limits) as client:
        found = client.get("/search", params={"text": "a shape", "k": 20})
        found.raise_for_status()
        ids = [hit["id"] for hit in found.json()["results"]]
        image = client.get(f"/image/{ids[0]}").content  # query with an image the index holds
        jobs = _requests(client, image, ids, requests)

        def timed(job: tuple[str, Callable[[], Any]]) -> tuple[str, float, str | None]:
            name, send = job
            t = time.perf_counter()
            try:
                response = send()
                ok = response.status_code == 200
                err = None if ok else f"{name}: HTTP {response.status_code} {response.text[:200]}"
            except Exception as exc:  # a timeout or a dropped connection counts as an error
                err = f"{name}: {type(exc).__name__}: {exc}"
            return name, (time.perf_counter() - t) * 1000, err

        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            done = list(pool.map(timed, jobs))
        seconds = time.perf_counter() - start
    ms = np.array([d[1] for d in done])
    errors = [d[2] for d in done if d[2]]
    by: dict[str, dict[str, float]] = {}
    for name in sorted({d[0] for d in done}):
        sel = np.array([d[1] for d in done if d[0] == name])
        by[name] = {
            "n": len(sel),
            "p50_ms": round(float(np.percentile(sel, 50)), 2),
            "p99_ms": round(float(np.percentile(sel, 99)), 2),
        }
    return LoadResult(
        requests=len(done),
        errors=len(errors),
        seconds=round(seconds, 3),
        p50_ms=round(float(np.percentile(ms, 50)), 2),
        p99_ms=round(float(np.percentile(ms, 99)), 2),
        max_ms=round(float(ms.max()), 2),
        throughput_rps=round(len(done) / seconds, 2),
        by_endpoint=by,
        error_examples=errors[:5],
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", help="base URL of a running `clipforge serve`, e.g. http://127.0.0.1:8000")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    result = run_load(args.url, args.requests, args.concurrency, args.timeout)
    print(json.dumps(asdict(result), indent=2) if args.json else result.summary())
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
