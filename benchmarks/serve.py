"""`annot serve` on loopback, as a client sees it: warm latency of annotate (one photo) and search, then a bounded
load of concurrent clients, with the server's memory before, during (sampled every second) and after.

The server is `annot serve` on a copy of the store with the Corel-5k test images annotated into its library (4,500
training images + 499 photos). Latency: sequential requests after a warm-up, median and 99th percentile. Load:
``--clients`` threads for ``--seconds``, each sending annotate (a test image) and search (a vocabulary word) in
turn, on its own connection; every non-200 answer is an error.

    python benchmarks/serve.py [--store out/corel5k.annot] [--clients 16] [--seconds 60]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

import annot
from common import tree_memory, write_results


def start(store: Path, port: int, src: Path | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(src)} if src is not None else None
    proc = subprocess.Popen([sys.executable, "-m", "annot.cli.main", "serve", "--store", str(store), "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not start: " + (proc.stderr.read().decode() if proc.stderr else ""))


def summary(seconds: list[float]) -> dict[str, float]:
    return {"median_ms": round(1000 * statistics.median(seconds), 1),
            "p99_ms": round(1000 * float(np.percentile(seconds, 99)), 1), "requests": len(seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("out/corel5k.annot"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/corel5k"))
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--port", type=int, default=8799)
    parser.add_argument("--src", type=Path, default=None, help="serve with the annot at this src (an older checkout)")
    parser.add_argument("--label", default="", help="results go to results/serve-LABEL.* (with --src)")
    args = parser.parse_args()
    copy = args.store.parent / f"bench-serve{'-' + args.label if args.label else ''}.annot"
    shutil.rmtree(copy, ignore_errors=True)  # kept uploads change it: a fresh copy each run
    shutil.copytree(args.store, copy)
    env = {**os.environ, "PYTHONPATH": str(args.src)} if args.src is not None else None  # the same annot as served
    subprocess.run([sys.executable, "-m", "annot.cli.main", "annotate", str(args.data / "images" / "test"),
                    "--store", str(copy)], check=True, capture_output=True, env=env)
    keep = [p.read_bytes() for p in sorted((args.data / "images" / "train").glob("*.jpeg"))[:20]]
    images = [p.read_bytes() for p in sorted((args.data / "images" / "test").glob("*.jpeg"))[:50]]
    words = list(annot.open_store(copy).model().vocabulary)
    proc = start(copy, args.port, args.src)
    url = f"http://127.0.0.1:{args.port}"
    try:
        client = httpx.Client(base_url=url, timeout=60)
        for i in range(5):  # warm-up
            client.post("/v1/annotate", files={"image": ("w.jpg", images[i])})
            client.get("/v1/search", params={"q": words[i]})
        annotate_s, search_s = [], []
        for i in range(100):
            t = time.perf_counter()
            assert client.post("/v1/annotate", files={"image": ("a.jpg", images[i % len(images)])}).status_code == 200
            annotate_s.append(time.perf_counter() - t)
        for i in range(300):
            t = time.perf_counter()
            assert client.get("/v1/search", params={"q": words[i % len(words)]}).status_code == 200
            search_s.append(time.perf_counter() - t)
        keep_s = []
        for i, data in enumerate(keep):  # kept uploads: distinct photos, each joins the library
            t = time.perf_counter()
            assert client.post("/v1/annotate", params={"keep": True}, files={"image": (f"k{i}.jpg", data)}
                               ).status_code == 200
            keep_s.append(time.perf_counter() - t)
        warm = {"annotate": summary(annotate_s), "search": summary(search_s), "kept upload": summary(keep_s)}
        print("warm", warm, flush=True)
        memory_before = tree_memory(proc.pid)

        done: dict[str, list[float]] = {"annotate": [], "search": []}
        errors: list[str] = []
        lock = threading.Lock()
        stop = time.monotonic() + args.seconds

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(base_url=url, timeout=60) as c:
                turn = seed % 2
                while time.monotonic() < stop:
                    kind = "annotate" if turn == 0 else "search"
                    turn = 1 - turn
                    t = time.perf_counter()
                    try:
                        if kind == "annotate":
                            r = c.post("/v1/annotate", files={"image": ("l.jpg", rng.choice(images))})
                        else:
                            r = c.get("/v1/search", params={"q": rng.choice(words)})
                        ok = r.status_code == 200
                        why = f"{kind}: {r.status_code}"
                    except httpx.HTTPError as exc:
                        ok, why = False, f"{kind}: {type(exc).__name__}"
                    with lock:
                        (done[kind] if ok else errors).append(time.perf_counter() - t if ok else why)  # type: ignore[arg-type]

        samples: list[tuple[float, int]] = []  # (seconds into the load, the server's resident size)

        def sample() -> None:
            while time.monotonic() < stop:
                samples.append((time.perf_counter() - started, tree_memory(proc.pid)))
                time.sleep(1.0)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.clients)]
        started = time.perf_counter()
        for t in [*threads, threading.Thread(target=sample)]:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        memory_after = tree_memory(proc.pid)
        health = client.get("/v1/health").json()
        load = {"clients": args.clients, "seconds": round(elapsed, 1), "errors": len(errors),
                "error_examples": sorted(set(map(str, errors)))[:5],
                "requests_per_s": round((len(done["annotate"]) + len(done["search"])) / elapsed, 1),
                "annotate": summary(done["annotate"]) if done["annotate"] else {},
                "search": summary(done["search"]) if done["search"] else {},
                "mean_annotate_batch": round(health["batched"] / max(health["batches"], 1), 2)}
        half = [rss for at, rss in samples if at >= elapsed / 2]
        memory = {"before_load_mib": round(memory_before / 2**20), "after_load_mib": round(memory_after / 2**20),
                  "peak_mib": round(max(rss for _, rss in samples) / 2**20),
                  "second_half_min_mib": round(min(half) / 2**20), "second_half_max_mib": round(max(half) / 2**20),
                  "every_10_s_mib": [round(rss / 2**20) for at, rss in samples[::10]]}
        print("load", load, memory, flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    results = {"warm": warm, "load": load, "memory": memory, "photos": 4500 + 499}
    write_results("serve" + (f"-{args.label}" if args.label else ""), results,
                  ["", "median (ms)", "p99 (ms)", "requests"], [
        (f"| annotate, warm | {warm['annotate']['median_ms']} | {warm['annotate']['p99_ms']} | "
         f"{warm['annotate']['requests']} |"),
        f"| search, warm | {warm['search']['median_ms']} | {warm['search']['p99_ms']} | {warm['search']['requests']} |",
        (f"| kept upload, warm | {warm['kept upload']['median_ms']} | {warm['kept upload']['p99_ms']} | "
         f"{warm['kept upload']['requests']} |"),
        (f"| annotate, {args.clients} clients | {load['annotate'].get('median_ms')} | "
         f"{load['annotate'].get('p99_ms')} | {load['annotate'].get('requests')} |"),
        (f"| search, {args.clients} clients | {load['search'].get('median_ms')} | {load['search'].get('p99_ms')} | "
         f"{load['search'].get('requests')} |"),
    ])


if __name__ == "__main__":
    main()
