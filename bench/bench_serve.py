"""Bounded loopback load test of the HTTP service (not a test): a real uvicorn server, N clients, T seconds.

    python bench/bench_serve.py                          # 8 clients for 30 s, 200-item index
    python bench/bench_serve.py --clients 4 --seconds 10 --items 100

Builds a small index from the shapes world with the embedded default model (in a temporary
directory), starts `clipforge serve` on 127.0.0.1 in a child process, waits for `/health`, then drives
`--clients` concurrent clients for `--seconds` seconds over text search (GET /search), image search
(POST /search, multipart), zero-shot classification (POST /classify) and text embedding (POST /embed)
with `clipforge.serve.loadtest.run_load`. Writes `bench/results/serve_load.json`: requests, errors,
status counts, p50/p99 latency per endpoint, and the server's RSS before and after the load (its
peak, VmHWM, and a sample every `--sample-every` seconds during it). Exits 1 if any request failed.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).parent))

from common import load_average, machine_info, write_json  # noqa: E402

from clipforge.data.shapes import ShapesWorld, write_csv_dataset  # noqa: E402
from clipforge.index import BuildOptions, build_index  # noqa: E402
from clipforge.serve.loadtest import run_load  # noqa: E402

ENDPOINTS = ("GET /search", "POST /search", "POST /classify", "POST /embed")


def _status_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of process `pid` in MiB, from /proc."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_health(url: str, proc: subprocess.Popen, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before answering /health")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer /health within {timeout}s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=8, help="concurrent clients")
    p.add_argument("--seconds", type=float, default=30.0, help="how long the clients keep sending")
    p.add_argument("--items", type=int, default=200, help="images in the index (shapes world, 64 px)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    p.add_argument("--sample-every", type=float, default=5.0, help="seconds between server RSS samples")
    p.add_argument("--out", default="serve_load.json", help="file name under bench/results/")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        csv = write_csv_dataset(ShapesWorld(seed=0, image_size=64), root / "data", n=args.items)
        build_index([str(csv)], root / "idx", model=None, options=BuildOptions(progress=False))
        build_s = time.perf_counter() - t

        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        cmd = [sys.executable, "-m", "clipforge", "serve", str(root / "idx"), "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning"]
        proc = subprocess.Popen(cmd, env=env)
        try:
            _wait_for_health(url, proc, timeout=120)
            before = _status_mb(proc.pid)
            load_start = load_average()
            samples: list[tuple[float, float | None]] = []  # (seconds into the load, server VmRSS MiB)
            stop = threading.Event()

            t0 = time.perf_counter()

            def sample() -> None:
                while not stop.wait(args.sample_every):
                    samples.append((round(time.perf_counter() - t0, 1), _status_mb(proc.pid).get("VmRSS")))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            try:
                result = run_load(url, requests=None, concurrency=args.clients, timeout=args.timeout,
                                  seconds=args.seconds, endpoints=ENDPOINTS)
            finally:
                stop.set()
                sampler.join()
            load_end = load_average()
            after = _status_mb(proc.pid)
        finally:
            proc.terminate()  # the child this script started, by its own handle
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    data = {
        "benchmark": "serve_load",
        "machine": machine_info(),
        "shared_machine": True,
        "setup": {
            "clients": args.clients,
            "seconds": args.seconds,
            "items": args.items,
            "model": "embedded default model",
            "server": "clipforge serve (uvicorn, 127.0.0.1, one worker process)",
            "endpoints": list(ENDPOINTS),
            "index_build_s": round(build_s, 2),
        },
        "load_average_start": load_start,
        "load_average_end": load_end,
        "server_rss_mb": {"before": before.get("VmRSS"), "after": after.get("VmRSS"), "peak": after.get("VmHWM"),
                          "during": samples},
        **asdict(result),
    }
    path = write_json(data, args.out)
    print(result.summary())
    for name, stats in result.by_endpoint.items():
        print(f"  {name:15s} n={stats['n']:5d} errors={stats['errors']:3d} "
              f"p50 {stats['p50_ms']:8.1f} ms  p99 {stats['p99_ms']:8.1f} ms")
    print(f"status counts: {result.status_counts}")
    print(f"server RSS: {before.get('VmRSS')} MiB before, {after.get('VmRSS')} MiB after "
          f"(peak {after.get('VmHWM')} MiB); during: {[mb for _, mb in samples]}")
    print(f"wrote {path}")
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
