"""Benchmark of the ANN index kinds clipforge offers, on synthetic clustered embeddings (not a test).

    python bench/bench_index.py                 # 1M x 512 (about 10 minutes on 2 cores)
    python bench/bench_index.py --n 200000      # quicker

Data: a Gaussian mixture of `--clusters` centres on the unit sphere; each cluster spreads in its
own random low-dimensional subspace plus a little isotropic noise, then every vector is
L2-normalised (like CLIP embeddings, whose intrinsic dimension is far below 512). Queries are
fresh draws from the same mixture. For every index kind, a child process builds the index that
`clipforge.index.ann.choose_index(n, dim, kind)` specifies and reports build time, peak RSS,
serialised size, single-query latency p50/p99, batch throughput and recall@10 against exact
search; IVF and HNSW also get a small sweep of their search-time knob. Results go to
`bench/results/index.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from clipforge.index import ann  # noqa: E402

K = 10


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_mixture(n: int, dim: int, clusters: int, seed: int, subspace: int = 24) -> np.ndarray:
    """`n` unit vectors from a clustered mixture (see module docstring), float32."""
    shape_rng = np.random.default_rng(12345)  # the mixture itself, shared by corpus and queries
    centres = shape_rng.standard_normal((clusters, dim)).astype(np.float32)
    rng = np.random.default_rng(seed)  # the draws
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dim), np.float32)
    labels = rng.integers(0, clusters, n)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(clusters + 1))
    for c in range(clusters):
        rows = order[bounds[c] : bounds[c + 1]]
        basis = shape_rng.standard_normal((subspace, dim)).astype(np.float32) * (0.7 / np.sqrt(subspace * dim))
        if len(rows) == 0:
            continue
        z = rng.standard_normal((len(rows), subspace)).astype(np.float32)
        noise = rng.standard_normal((len(rows), dim)).astype(np.float32) * (0.15 / np.sqrt(dim))
        out[rows] = centres[c] + z @ basis + noise
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def exact_topk(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    index = ann.build_faiss(ann.IndexSpec("flat"), data.shape[1], [data])
    return index.search(queries, k)[1]


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int = K) -> float:
    hits = sum(len(set(f[:k]) & set(t[:k])) for f, t in zip(found, truth))
    return hits / (len(truth) * k)


def _search(index, spec: ann.IndexSpec, data: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """faiss search, plus the exact re-ranking `SearchIndex` applies to PQ results."""
    if not spec.rerank:
        return index.search(q, k)[1]
    cand = index.search(q, k * spec.rerank)[1]
    out = np.empty((len(q), k), np.int64)
    for i, row in enumerate(cand):
        row = row[row >= 0]
        scores = data[np.sort(row)] @ q[i]
        out[i] = np.sort(row)[np.argsort(-scores)[:k]]
    return out


def _latency(index, spec, data, queries, n_queries: int) -> tuple[float, float]:
    times = []
    for q in queries[:n_queries]:
        t = time.perf_counter()
        _search(index, spec, data, q[None], K)
        times.append(time.perf_counter() - t)
    ms = np.array(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def run_child(kind: str, workdir: Path, latency_queries: int) -> dict:
    data = np.load(workdir / "data.npy", mmap_mode="r")
    queries = np.load(workdir / "queries.npy")
    truth = np.load(workdir / "truth.npy")
    n, dim = data.shape
    spec = ann.choose_index(n, dim, kind)
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    train = None
    if ann.train_size(spec):
        train = np.asarray(data[ann.sample_rows(n, ann.train_size(spec))])
    chunks = (np.asarray(data[i : i + 100_000]) for i in range(0, n, 100_000))
    index = ann.build_faiss(spec, dim, chunks, train)
    build_s = time.perf_counter() - t0
    with tempfile.NamedTemporaryFile(dir=workdir, suffix=".faiss") as fh:
        ann.write_index(index, fh.name)
        size_mb = os.path.getsize(fh.name) / 2**20
    result = {
        "kind": kind,
        "params": spec.to_dict(),
        "build_s": round(build_s, 2),
        "index_mb": round(size_mb, 1),
        "rss_before_build_mb": round(rss0, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }
    t = time.perf_counter()
    found = _search(index, spec, data, queries, K)
    batch_s = time.perf_counter() - t
    result["recall_at_10"] = round(recall_at_k(found, truth), 4)
    result["batch_qps"] = round(len(queries) / batch_s, 1)
    p50, p99 = _latency(index, spec, data, queries, latency_queries)
    result["latency_ms_p50"], result["latency_ms_p99"] = round(p50, 3), round(p99, 3)
    if spec.rerank:
        raw = index.search(queries, K)[1]
        result["recall_at_10_without_rerank"] = round(recall_at_k(raw, truth), 4)
    sweep = []
    knob = {"ivf_flat": "nprobe", "ivf_pq": "nprobe", "hnsw": "ef_search"}.get(kind)
    if knob:
        base = getattr(spec, knob)
        for value in sorted({max(1, int(base * f)) for f in (1 / 16, 1 / 4, 1 / 2, 1, 2, 4)}):
            setattr(spec, knob, value)
            ann.configure(index, spec)
            rec = recall_at_k(_search(index, spec, data, queries, K), truth)
            lp50, lp99 = _latency(index, spec, data, queries, min(200, latency_queries))
            sweep.append(
                {
                    knob: value,
                    "recall_at_10": round(rec, 4),
                    "latency_ms_p50": round(lp50, 3),
                    "latency_ms_p99": round(lp99, 3),
                }
            )
        result["sweep"] = sweep
    result["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="corpus size")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--clusters", type=int, default=100)
    p.add_argument("--queries", type=int, default=1000, help="queries for recall and batch throughput")
    p.add_argument("--latency-queries", type=int, default=300, help="single queries timed one by one")
    p.add_argument("--kinds", default=",".join(ann.INDEX_KINDS))
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "index.json"))
    p.add_argument("--workdir", default=None, help="scratch folder for the data (default: a temp dir)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        print(json.dumps(run_child(args.child, Path(args.workdir), args.latency_queries)))
        return 0

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        data = make_mixture(args.n, args.dim, args.clusters, args.seed)
        queries = make_mixture(args.queries, args.dim, args.clusters, args.seed + 1)
        gen_s = time.perf_counter() - t
        np.save(work / "data.npy", data)
        np.save(work / "queries.npy", queries)
        t = time.perf_counter()
        np.save(work / "truth.npy", exact_topk(data, queries, K))
        truth_s = time.perf_counter() - t
        del data
        print(f"data {args.n} x {args.dim}: generated in {gen_s:.1f}s, exact top-{K} in {truth_s:.1f}s", flush=True)
        results = []
        for kind in args.kinds.split(","):
            cmd = [
                sys.executable,
                __file__,
                "--child",
                kind,
                "--workdir",
                str(work),
                "--latency-queries",
                str(args.latency_queries),
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            res = json.loads(out.strip().splitlines()[-1])
            results.append(res)
            print(
                f"{kind:9s} build {res['build_s']:7.1f}s  peak RSS {res['peak_rss_mb']:7.0f} MB  "
                f"index {res['index_mb']:7.1f} MB  p50 {res['latency_ms_p50']:7.2f} ms  "
                f"p99 {res['latency_ms_p99']:7.2f} ms  recall@10 {res['recall_at_10']:.4f}",
                flush=True,
            )
    report = {
        "n": args.n,
        "dim": args.dim,
        "clusters": args.clusters,
        "queries": args.queries,
        "latency_queries": args.latency_queries,
        "k": K,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "auto_choice": ann.choose_index(args.n, args.dim).kind,
        "exact_search_s": round(truth_s, 2),
        "results": results,
    }
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
