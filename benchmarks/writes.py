"""Writes in proportion to the change: annotate's per-chunk commit, a correction and a kept upload, side by side on
libraries of 5,000 to 1,000,000 photos, with this annot and (``--before``) an older checkout.

Each library is a copy of the Corel-5k store with that many synthetic photos written straight into it
(`benchmarks/library.py`'s `synthetic_library`; for the older annot, its own `synthetic_library` on the store
folded back into one `annot.duckdb`). On each, in this order:

- annotate's per-chunk commit: 64 Corel-5k test images annotated in chunks of 16 with a commit after each chunk.
  This annot: the time a chunk's changes hold the store's lock (its new rows, its annotations and its vectors, each
  written and published); the older one: its commit (the database copied and published, the library index saved,
  the manifest switched). Median over the chunks, and the bytes of database and index files each chunk wrote;
- corrections through `annot serve` (`POST /v1/corrections`: one tag of a photo the chunks annotated added and
  rejected in turn: it joins the training index and leaves it): median and 90th percentile of 15 requests, then the first search after them;
- kept uploads (`POST /v1/annotate?keep=true`, a Corel-5k test image each): median of 5.

    python benchmarks/writes.py [--store out/corel5k.annot] [--sizes 5000,10000,100000,1000000] [--before DIR]

``--before`` is a checkout of an older annot (``git worktree add /tmp/annot-before COMMIT``).
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
from typing import Any

import httpx
import numpy as np

from annot.schema.layered import fold_into_base
from annot.store import StoreDir
from common import write_results
from library import synthetic_library
from serve import start

SCRATCH = Path("/tmp/annot-writes-run")
CHUNKS = """
import json, sys, time
from pathlib import Path
import annot.library.collection as collection
from annot.store import StoreDir
store, images = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
collection.COMMIT_SECONDS = 0.0
changes, commits = [], []
commit = collection.Library.commit
def timed_commit(self):
    started = time.perf_counter()
    commit(self)
    commits.append(time.perf_counter() - started)
collection.Library.commit = timed_commit
if hasattr(StoreDir, "change"):  # this annot: every change a writer taking turns makes
    from contextlib import contextmanager
    change = StoreDir.change
    @contextmanager
    def timed_change(self, wait=None):
        outer = not self.hold and not self._changes
        started = time.perf_counter()
        with change(self, wait):
            yield
        if outer:
            changes.append(time.perf_counter() - started)
    StoreDir.change = timed_change
report = collection.annotate_photos(store, images, chunk=16)
print(json.dumps({"annotated": report.annotated, "changes": changes, "commits": commits}))
"""


def files_bytes(store: Path) -> dict[str, int]:
    return {str(p.relative_to(store)): p.stat().st_size for d in ("db", "indexes", ".") if (store / d).is_dir()
            for p in (store / d).iterdir() if p.is_file()}


def chunk_commits(store: Path, data: Path, src: Path | None) -> dict[str, Any]:
    images = sorted((data / "images" / "test").glob("*.jpeg"))[:64]
    chunks = len(images) // 16
    before = files_bytes(store)
    env = {**os.environ, "PYTHONPATH": str((src / "src" if src else Path("src")).resolve())}
    done = subprocess.run([sys.executable, "-c", CHUNKS, str(store), *map(str, images)], env=env, check=True,
                          capture_output=True, text=True)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    after = files_bytes(store)
    written = sum(size for name, size in after.items() if before.get(name) != size)
    if out["changes"]:  # this annot: a chunk's three changes (rows, annotations, vectors), after the run's first
        per_chunk = [sum(out["changes"][1 + 3 * k : 4 + 3 * k]) for k in range(chunks)]
    else:  # the older one: its commit after each chunk (the chunk's rows went into its private copy)
        per_chunk = out["commits"][:chunks]
    return {"annotated": out["annotated"], "chunk_median_ms": round(1000 * statistics.median(per_chunk), 1),
            "chunk_max_ms": round(1000 * max(per_chunk), 1), "mib_per_chunk": round(written / chunks / 2**20, 2)}


def through_server(store: Path, data: Path, port: int, src: Path | None) -> dict[str, Any]:
    photo = int(duckdb_value(store, "SELECT max(image_id) FROM photo_files WHERE state = 'annotated'"))
    proc = start(store, port, (src / "src").resolve() if src else None)
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)
        client.get("/v1/search", params={"q": "sky"})  # the model and the photo view loaded
        times = []
        for n in range(15):
            started = time.perf_counter()
            answer = client.post("/v1/corrections", json={"id": photo, "tag": "sky",
                                                          "action": "add" if n % 2 == 0 else "reject"})
            times.append(time.perf_counter() - started)
            assert answer.status_code == 200 and answer.json()["recorded"] == 1, answer.text
        started = time.perf_counter()
        client.get("/v1/search", params={"q": "sky"})
        reload_s = time.perf_counter() - started
        kept = []
        for image in sorted((data / "images" / "test").glob("*.jpeg"))[64:69]:
            started = time.perf_counter()
            answer = client.post("/v1/annotate", params={"keep": "true"},
                                 files={"image": (image.name, image.read_bytes(), "image/jpeg")})
            kept.append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.text
        return {"correction_median_ms": round(1000 * statistics.median(times), 1),
                "correction_p90_ms": round(1000 * float(np.percentile(times, 90)), 1),
                "search_after_s": round(reload_s, 2), "kept_upload_median_ms": round(1000 * statistics.median(kept), 1)}
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def duckdb_value(store: Path, sql: str) -> Any:
    with StoreDir.open(store) as s:  # this annot reads a store of either layout
        return s.db.read_sql(sql)[1][0][0]


def legacy_copy(store: Path, where: Path) -> Path:
    """The store as annot wrote it before layers: one ``annot.duckdb`` (its layers folded), no database record."""
    out = where / store.name
    if out.exists():
        return out
    where.mkdir(parents=True, exist_ok=True)
    shutil.copytree(store, out, ignore=shutil.ignore_patterns("db", "manifest.previous.json", ".lock"))
    manifest = json.loads((store / "manifest.json").read_text())
    record = manifest.pop("database")
    fold_into_base(store / record["base"]["path"], [store / s["path"] for s in record["segments"]],
                   out / "annot.duckdb", lambda path: None)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return out


def older_library(store: Path, size: int, before: Path) -> Path:
    """The older annot's own synthetic library of ``size`` photos on ``store`` (a store in its layout)."""
    code = ("import sys; from pathlib import Path; sys.path[:0] = [sys.argv[1] + '/src', sys.argv[1] + '/benchmarks']; "
            "from library import synthetic_library; print(synthetic_library(Path(sys.argv[2]), int(sys.argv[3])))")
    done = subprocess.run([sys.executable, "-c", code, str(before.resolve()), str(store), str(size)], check=True,
                          capture_output=True, text=True, cwd=before)
    return Path(done.stdout.strip().splitlines()[-1])


def database_mib(store: Path) -> float:
    files = list((store / "db").iterdir()) if (store / "db").is_dir() else [store / "annot.duckdb"]
    return round(sum(p.stat().st_size for p in files if p.is_file()) / 2**20, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("out/corel5k.annot"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/corel5k"))
    parser.add_argument("--sizes", default="5000,10000,100000,1000000")
    parser.add_argument("--before", type=Path, default=None,
                        help="a checkout of an older annot, measured beside (without it: an earlier run's rows of it)")
    parser.add_argument("--port", type=int, default=8796)
    args = parser.parse_args()
    store, data = args.store.resolve(), args.data.resolve()
    legacy = legacy_copy(store, Path("/tmp/annot-writes-before")) if args.before else None
    results: dict[str, Any] = {}
    for size in [int(s) for s in args.sizes.split(",")]:
        runs: dict[str, tuple[Path, Path | None]] = {"this annot": (synthetic_library(store, size), None)}
        if args.before and legacy is not None:
            runs["before"] = (older_library(legacy, size, args.before), args.before)
        for label, (made, src) in runs.items():
            name = f"{size:,} photos, {label}"
            copy = SCRATCH / made.name  # measured on a copy: the made library stays as it was for the next run
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(made, copy)
            try:
                results[name] = {"database_mib": database_mib(copy), **chunk_commits(copy, data, src),
                                 **through_server(copy, data, args.port, src)}
            finally:
                shutil.rmtree(copy, ignore_errors=True)
            print(name, results[name], flush=True)
        earlier = Path(__file__).parent / "results" / "writes.json"
        if args.before is None and earlier.is_file():  # the older annot's rows of an earlier run, beside this one's
            kept = json.loads(earlier.read_text()).get(f"{size:,} photos, before")
            if kept:
                results[f"{size:,} photos, before"] = kept
    rows = [f"| {name} | {r['database_mib']} | {r['chunk_median_ms']} (max {r['chunk_max_ms']}) | "
            f"{r['mib_per_chunk']} | {r['correction_median_ms']} / {r['correction_p90_ms']} | "
            f"{r['search_after_s']} | {r['kept_upload_median_ms']} |" for name, r in results.items()]
    write_results("writes", results, ["library", "database MiB", "annotate: per-chunk commit median ms",
                                      "MiB written per chunk", "correction via HTTP median / p90 ms",
                                      "first search after s", "kept upload via HTTP median ms"], rows)


if __name__ == "__main__":
    main()
