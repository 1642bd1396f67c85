"""The photo view written at the fold, side by side: the first search after a change, with the view the fold wrote
(mapped, the photos the segments touched read again) and without it (the whole view read from the database, as a
base folded by an older annot is read), on one store, in one run.

    python benchmarks/photo_view.py [--store out/bench-1000000.annot] [--corrections 15] [--repeats 3]

The store (a copy of it, in ``<store>-view.annot``) is folded once so that its base has a view, then corrected
(``--corrections`` tags of library photos added and rejected in turn, each its own segment). Each measurement is a
fresh process: open the store, search one word, the time of that first search (model, indexes and photo view
loaded); median of ``--repeats``. Then the same after the manifest's view is taken out (the database read whole).
And the command a person types, whole (a fresh process, as ``annot`` runs with its bytecode written): ``annot search
sky --store COPY`` with the view, and ``annot --help``; median of ``--repeats``.
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

from annot.library.corrections import Correction, record_corrections
from annot.store import StoreDir, dbfiles
from common import write_results

FIRST_SEARCH = """
import sys, time
import annot
import annot.api, annot.library.search, annot.model  # imported before the clock starts: the loading is timed
store = annot.open_store(sys.argv[1])
t = time.perf_counter()
store.search(["sky"], n=20)
print(time.perf_counter() - t)
"""


def first_search(store: Path, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", FIRST_SEARCH, str(store)], check=True, capture_output=True,
                             text=True, timeout=600)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def command_seconds(arguments: list[str], repeats: int) -> float:
    """Wall-clock seconds of ``annot ARGUMENTS`` as a fresh process (median)."""
    import os

    command = [str(Path(sys.executable).with_name("annot")), *arguments]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(command, check=True, capture_output=True, env=env, timeout=600)  # its bytecode written
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env, timeout=600)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def fold(store: Path) -> float:
    """One correction published with a fold (the base and its view written anew); its seconds."""
    with StoreDir.open(store) as s:
        photo = int(s.db.read_sql("SELECT min(image_id) FROM photo_files WHERE state = 'annotated'")[1][0][0])
    real = dbfiles.wants_fold
    dbfiles.wants_fold = lambda segments, base: True  # type: ignore[assignment]
    try:
        started = time.perf_counter()
        record_corrections(store, [Correction(photo, "sky", "add")])
        return time.perf_counter() - started
    finally:
        dbfiles.wants_fold = real  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("out/bench-1000000.annot"))
    parser.add_argument("--corrections", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    copy = args.store.with_name(f"{args.store.stem}-view.annot")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(args.store, copy)
    os.sync()  # the copy on disk: its write-back does not slow the timed commits' fsyncs
    fold_seconds = fold(copy)
    with StoreDir.open(copy) as s:
        photos = [int(i) for (i,) in s.db.read_sql(
            "SELECT image_id FROM photo_files WHERE state = 'annotated' ORDER BY image_id LIMIT 8")[1]]
        n_photos = int(s.db.read_sql("SELECT count(*) FROM photo_files")[1][0][0])
    for n in range(args.corrections):
        record_corrections(copy, [Correction(photos[n % len(photos)], "water", "add" if n % 2 == 0 else "reject")])
    manifest = json.loads((copy / "manifest.json").read_text())
    segments = len(manifest["database"]["segments"])
    with_view = first_search(copy, args.repeats)
    search_command = command_seconds(["search", "sky", "--store", str(copy)], args.repeats)
    help_command = command_seconds(["--help"], args.repeats)
    view = manifest["database"].pop("view")
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2))
    without_view = first_search(copy, args.repeats)
    view_mib = sum((copy / f["path"]).stat().st_size for f in view) / 2**20
    shutil.rmtree(copy, ignore_errors=True)
    out: dict[str, Any] = {"store": str(args.store), "library_photos": n_photos, "segments": segments,
                           "fold_seconds": round(fold_seconds, 1), "view_mib": round(view_mib, 1),
                           "first_search_with_view_s": round(with_view, 2),
                           "first_search_without_view_s": round(without_view, 2),
                           "annot_search_command_s": round(search_command, 2), "annot_help_s": round(help_command, 2),
                           "repeats": args.repeats}
    print(out, flush=True)
    row = (f"| {n_photos:,} | {segments} | {out['first_search_with_view_s']} | {out['first_search_without_view_s']} "
           f"| {out['view_mib']} | {out['fold_seconds']} | {out['annot_search_command_s']} | {out['annot_help_s']} |")
    rows = [row]
    write_results(f"photo-view-{n_photos}", out, ["library photos", "segments above the base",
                                                  "first search, view from the fold s",
                                                  "first search, view read from the database s", "view MiB",
                                                  "fold with its view s", "`annot search sky` whole s",
                                                  "`annot --help` s"], rows)


if __name__ == "__main__":
    main()
