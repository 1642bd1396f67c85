"""What one correction costs in process (`record_corrections`, as the server's route calls it), this annot beside an
older checkout, on copies of the same stores, in one run.

    python benchmarks/correction_cost.py --before /tmp/annot-start [--stores out/bench-5000.annot,out/bench-1000000.annot]

For each store and each annot: a fresh copy, one library photo's tag added and rejected in turn 16 times (the
first left out: it makes the empty segment and opens the caches), the median and 90th percentile of the other 15.
``--before`` is a checkout of an older annot (``git worktree add /tmp/annot-start COMMIT``), run with its ``src``
first on the path.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from common import write_results

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
    env = {**os.environ, **({"PYTHONPATH": str(src)} if src else {})}
    try:
        out = subprocess.run([sys.executable, "-c", TIMED, str(copy)], check=True, capture_output=True, text=True,
                             env=env, timeout=1800)
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


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
            rows.append(f"| {store.name} | {who} | {r['median_ms']} | {r['p90_ms']} |")
    write_results("correction-cost", results, ["store", "annot", "correction median ms", "p90 ms"], rows)


if __name__ == "__main__":
    main()
