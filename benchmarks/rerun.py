"""What `annot annotate` costs when nothing changed: a rerun over a folder it has annotated before, as a fresh command.

A rerun reads no photo: it compares each file's size, modification time, inode and change time with what it
recorded. This times that rerun (median of ``--repeats``) over ``--photos`` photos (Corel-5k images as they are, hard
links to ``--distinct`` files, since the disk is small), with the code at ``--src`` (``src`` of this checkout by
default; a checkout of an older annot to compare with). The first run, which annotates them all, is timed too.

    python benchmarks/rerun.py --store STORE [--photos 20000] [--src ../old/src] [--label before]
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

WORK = Path("/tmp/annot-rerun")


def make_photos(data: Path, photos: int, distinct: int) -> Path:
    sources = sorted((data / "images" / "train").glob("*.jpeg"))[:distinct]
    if not sources:
        raise SystemExit(f"{data}: no images under images/train (run from the project's root, or give --data)")
    folder = WORK / f"photos-{photos}"
    if not folder.exists():
        for i in range(photos):
            sub = folder / f"{i // 1000:03d}"
            sub.mkdir(parents=True, exist_ok=True)
            os.link(sources[i % len(sources)], sub / f"IMG_{i:05d}.jpg")
    return folder


def annotate(src: Path, store: Path, folder: Path) -> tuple[float, dict[str, object]]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "annot.cli.main", "annotate", str(folder), "--store", str(store),
                           "--json"], env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True, help="a store to copy (its library is not used)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/corel5k"))
    parser.add_argument("--photos", type=int, default=20_000)
    parser.add_argument("--distinct", type=int, default=4_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src")
    parser.add_argument("--label", default="this checkout")
    args = parser.parse_args()
    folder = make_photos(args.data.resolve(), args.photos, args.distinct)
    store = WORK / f"store-{args.label.replace(' ', '-')}.annot"
    shutil.rmtree(store, ignore_errors=True)
    shutil.copytree(args.store, store)
    first, report = annotate(args.src.resolve(), store, folder)
    reruns = []
    for _ in range(args.repeats):
        seconds, again = annotate(args.src.resolve(), store, folder)
        assert again["annotated"] == again["reannotated"] == 0, again
        reruns.append(seconds)
    row = {"label": args.label, "photos": args.photos, "first_run_s": round(first, 1),
           "first_run_photos_per_s": report["photos_per_second"], "rerun_s": [round(s, 2) for s in reruns],
           "rerun_median_s": round(statistics.median(reruns), 2)}
    print(json.dumps(row))
    results = Path(__file__).parent / "results" / "rerun.json"
    rows = json.loads(results.read_text()) if results.exists() else []
    rows = [r for r in rows if r["label"] != args.label] + [row]
    results.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
