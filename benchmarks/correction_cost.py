"""What one correction costs, this annot beside an older checkout, on copies of the same stores, in one run.

    python benchmarks/correction_cost.py --before /tmp/annot-start [--stores out/bench-5000.annot,out/bench-1000000.annot]

For each store and each annot, on a fresh copy:

- in process (`record_corrections`, a correction on its own: `annot correct`): one library photo's tag added and
  rejected in turn 16 times (the first left out: it makes the empty segment and opens the caches), the median and
  90th percentile of the other 15;
- through `annot serve` (`POST /v1/corrections`, the page's review loop): 15 corrections back to back (a burst), then
  8 at a person's pace (one a second), medians and 90th percentiles of each; then the first search after them.

``--before`` is a checkout of an older annot (``git worktree add /tmp/annot-start COMMIT``), run with its ``src``
first on the path.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from annot.store import StoreDir
from common import write_results
from serve import start

TIMED = """
import json, statistics, sys, time
from pathlib import Path
from annot.library.corrections import Correction, record_corrections
from annot.store import StoreDir
root = Path(sys.argv[1])
with StoreDir.open(root) as s:
    photo = int(s.db.read_sql("SELECT min(image_id) FROM photo_files WHERE state = 'annotated'")[1][0][0])
times = []
for i in range(16):
    t = time.perf_counter()
    record_corrections(root, [Correction(photo, "sky", "add" if i % 2 == 0 else "reject")], source="api")
    times.append(time.perf_counter() - t)
times = sorted(times[1:])
print(json.dumps({"median_ms": round(1000 * statistics.median(times), 1), "p90_ms": round(1000 * times[13], 1)}))
"""


def timed(store: Path, src: Path | None) -> dict[str, float]:
    copy = store.with_name(f"{store.stem}-corrections.annot")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(store, copy)
    os.sync()  # the copy on disk: its write-back does not slow the timed commits' fsyncs
    env = {**os.environ, **({"PYTHONPATH": str(src)} if src else {})}
    try:
        out = subprocess.run([sys.executable, "-c", TIMED, str(copy)], check=True, capture_output=True, text=True,
                             env=env, timeout=1800)
        result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
        result.update(served(copy, src.parent if src else None))
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    return result


def served(store: Path, src: Path | None, port: int = 8931) -> dict[str, float]:
    """Corrections through the server: a burst, then a person's pace; then the first search after them."""
    with StoreDir.open(store) as s:
        photo = int(s.db.read_sql("SELECT max(image_id) FROM photo_files WHERE state = 'annotated'")[1][0][0])
    proc = start(store, port, (src / "src").resolve() if src else None)
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)
        client.get("/v1/search", params={"q": "sky"})  # the model and the photo view loaded
        out: dict[str, float] = {}
        tags = client.get(f"/v1/images/{photo}").json()["tags"]
        made = int(any(t["tag"] == "sky" and t["source"] in ("added", "confirmed") for t in tags))  # add it first
        for name, count, pause in (("burst", 15, 0.0), ("paced", 8, 1.0)):
            times = []
            for _ in range(count):
                n, made = made, made + 1
                time.sleep(pause)  # a person looking at the photo before the next click
                started = time.perf_counter()
                answer = client.post("/v1/corrections", json={"id": photo, "tag": "sky",
                                                              "action": "add" if n % 2 == 0 else "reject"})
                times.append(time.perf_counter() - started)
                assert answer.status_code == 200 and answer.json()["recorded"] == 1, answer.text
            out[f"api_{name}_median_ms"] = round(1000 * statistics.median(times), 1)
            out[f"api_{name}_p90_ms"] = round(1000 * float(np.percentile(times, 90)), 1)
        started = time.perf_counter()
        client.get("/v1/search", params={"q": "sky"})
        out["search_after_s"] = round(time.perf_counter() - started, 2)
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="out/bench-5000.annot,out/bench-1000000.annot")
    parser.add_argument("--before", type=Path, required=True)
    args = parser.parse_args()
    results, rows = {}, []
    for store in (Path(s) for s in args.stores.split(",")):
        for who, src in (("this annot", None), ("before", args.before / "src")):
            r = timed(store, src)
            results[f"{store.name}, {who}"] = r
            print(store.name, who, r, flush=True)
            rows.append(f"| {store.name} | {who} | {r['median_ms']} / {r['p90_ms']} | {r['api_burst_median_ms']} / "
                        f"{r['api_burst_p90_ms']} | {r['api_paced_median_ms']} / {r['api_paced_p90_ms']} | "
                        f"{r['search_after_s']} |")
    write_results("correction-cost", results, ["store", "annot", "in process median / p90 ms",
                                               "API burst median / p90 ms", "API one a second median / p90 ms",
                                               "first search after s"], rows)


if __name__ == "__main__":
    main()
