"""Search at a million photos, side by side: the library index annot chooses for that size (IVF-SQ8, tuned to
recall@20 >= 0.95) against an exact one, on two copies of the same store.

Each copy holds the store's training images plus ``--photos`` synthetic library photos written straight into it
(`benchmarks/library.py`'s `synthetic_library`: five tags each, rows of the shared space drawn around the training
images' own). Measured per copy: the first search after opening the store (loading the model, the indexes and the
photo view), the median of searches by 10 words in each mode in process (a fresh process per store), the median
and 99th percentile of `GET /v1/search` through `annot serve` (sequential, after a warm-up) with the server's
memory (PSS) sampled every 0.2 s, and a fresh `annot search WORD` command (median of 3). The store with the
5,000-photo library is measured the same way.

    python benchmarks/million.py [--store /tmp/annot-rescore/store.annot] [--photos 1000000]

`--store` is a store with a library (`benchmarks/rescore.py` leaves one with 5,000 photos).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

import annot
from common import tree_memory, write_results
from library import synthetic_library
from serve import start, summary

WORDS = ["sky", "water", "tree", "people", "grass", "mountain", "snow", "beach", "clouds", "sand"]


def in_process(store: Path) -> dict[str, float]:
    """The in-process numbers, measured in a fresh process of their own (the stores measured before leave this one
    with their memory and FAISS's threads)."""
    done = subprocess.run([sys.executable, __file__, "--in-process", str(store)], check=True, capture_output=True,
                          text=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measure_in_process(store: Path) -> dict[str, float]:
    api = annot.open_store(store)
    started = time.perf_counter()
    api.search(["sky"], n=20)
    out = {"first_search_s": round(time.perf_counter() - started, 2)}
    for mode in ("space", "tags", "combined"):
        times = []
        for word in WORDS:
            started = time.perf_counter()
            api.search([word], n=20, mode=mode)
            times.append(time.perf_counter() - started)
        out[f"{mode}_ms"] = round(1000 * statistics.median(times), 1)
    api.close()
    return out


def through_http(store: Path, port: int) -> dict[str, object]:
    proc = start(store, port)
    peak = [0]
    running = [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], tree_memory(proc.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
        client.get("/v1/search", params={"q": "sky"})  # the first search loads the photo view
        times = []
        for i in range(200):
            started = time.perf_counter()
            assert client.get("/v1/search", params={"q": WORDS[i % len(WORDS)]}).status_code == 200
            times.append(time.perf_counter() - started)
        return {"search": summary(times), "peak_pss_mib": round(peak[0] / 2**20)}
    finally:
        running[0] = False
        proc.terminate()
        proc.wait(timeout=60)


def command(store: Path) -> float:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "annot.cli.main", "search", "sky", "--store", str(store), "-n", "5"],
                       check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("/tmp/annot-rescore/store.annot"))
    parser.add_argument("--photos", type=int, default=1_000_000)
    parser.add_argument("--port", type=int, default=8797)
    parser.add_argument("--in-process", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process is not None:
        print(json.dumps(measure_in_process(args.in_process)))
        return
    store = args.store.resolve()
    runs = {"5,000 photos": store,
            f"{args.photos:,} photos, exact index": synthetic_library(store, args.photos, exact=True),
            f"{args.photos:,} photos, chosen index": synthetic_library(store, args.photos)}
    results = {}
    for name, path in runs.items():
        manifest = annot.open_store(path).manifest
        record = manifest.collection
        results[name] = {"index": record.factory if record else None,
                         "tuning": dict(record.tuning) if record else {},
                         **in_process(path), **through_http(path, args.port), "command_s": command(path)}
        print(name, results[name], flush=True)
    rows = [f"| {name} | {r['index']} | {r['first_search_s']} | {r['space_ms']} | {r['tags_ms']} | {r['combined_ms']} | "
            f"{r['search']['median_ms']} / {r['search']['p99_ms']} | {r['peak_pss_mib']:,} | {r['command_s']} |"
            for name, r in results.items()]
    write_results("million", results, ["library", "index", "first search s", "space ms", "tags ms", "combined ms",
                                       "HTTP search median / p99 ms", "server peak PSS MiB",
                                       "`annot search` command s"], rows)


if __name__ == "__main__":
    main()
