"""`annot annotate` over a large folder of realistic photos: throughput and peak memory, as a user runs it.

The photos are Corel-5k images upscaled to 4000 x 3000 (12 megapixels) and saved as JPEG (quality 90). The disk is
small, so ``--distinct`` different files are written and the folder holds ``--photos`` hard links to them: every
path is a photo of its own to annot (read, hashed, decoded and encoded), only the bytes on disk are shared. The run is
`annot annotate FOLDER --store COPY` as a fresh command on a copy of the store; its memory is the proportional set
size of the command and any decoding process (shared pages counted once), sampled every 0.2 s. Beside it, in the
same run: decoding alone and the encoder alone on the same photos, to compare with the whole. The same on a tenth of
the photos (a store copy of its own), to show that memory does not grow with their number. On the tenth, side by side
and alternating, twice each: decoding in line against a decoding process ahead of the network. Then a rerun
(nothing changed) is timed.

    python benchmarks/throughput.py [--store out/corel5k.annot] [--photos 20000] [--distinct 600]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from common import tree_memory, write_results

WORK = Path("/tmp/annot-throughput")


def make_photos(data: Path, photos: int, distinct: int) -> Path:
    sources = sorted((data / "images" / "train").glob("*.jpeg"))[:distinct]
    originals = WORK / "originals"
    originals.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(sources):
        target = originals / f"{i:05d}.jpg"
        if not target.exists():
            Image.open(src).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC).save(target, quality=90)
    folder = WORK / f"photos-{photos}"
    if not folder.exists():
        for i in range(photos):
            sub = folder / f"{i // 1000:03d}"
            sub.mkdir(parents=True, exist_ok=True)
            os.link(originals / f"{i % len(sources):05d}.jpg", sub / f"IMG_{i:05d}.jpg")
    return folder


# `annot annotate` with the decoding process forced on or off (annot's default depends on the cores it has)
FORCED = ("import sys, annot.features.images as images; images._cores = lambda: {cores}; "
          "from annot.cli.main import main; sys.argv[0] = 'annot'; main()")


def run_annotate(store: Path, folder: Path, decoding_process: bool | None = None) -> dict[str, float]:
    start_command = [sys.executable, "-m", "annot.cli.main"] if decoding_process is None else [
        sys.executable, "-c", FORCED.format(cores=8 if decoding_process else 1)]
    command = [*start_command, "annotate", str(folder), "--store", str(store), "--json"]
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_memory(proc.pid))
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, f"annot annotate exited {proc.returncode}"
    import json

    report = json.loads(proc.stdout.read() if proc.stdout else b"{}")
    done = report["annotated"] + report["reannotated"]
    return {"photos": report["seen"], "annotated": done, "seconds": round(seconds, 1),
            "photos_per_s": round(report["seen"] / seconds, 1), "peak_mib": round(peak / 2**20)}


def parts(folder: Path, store: Path, n: int) -> dict[str, float]:
    """Decoding alone (the encoder's input size, one process) and the encoder alone on decoded batches."""
    import torch

    from annot.features.images import iter_batches
    from annot.model import StoreModel

    paths = sorted(folder.rglob("*.jpg"))[:n]
    model = StoreModel.open(store)
    encoder = model.encoder()
    start = time.perf_counter()
    batches = list(iter_batches(paths, encoder, 32, workers=0, upright=True))
    decode = time.perf_counter() - start
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in batches:
            encoder.encode_sized(batch.sized)
    encode = time.perf_counter() - start
    model.close()
    return {"decode_only_photos_per_s": round(n / decode, 1), "encode_only_photos_per_s": round(n / encode, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("out/corel5k.annot"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/corel5k"))
    parser.add_argument("--photos", type=int, default=20_000)
    parser.add_argument("--distinct", type=int, default=600)
    args = parser.parse_args()
    folder = make_photos(args.data, args.photos, args.distinct)
    copy = args.store.parent / "bench-throughput.annot"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(args.store, copy)
    side = parts(folder, copy, 256)
    print("parts", side, flush=True)
    small_folder = make_photos(args.data, args.photos // 10, args.distinct)  # memory must not grow with the count
    small_copy = args.store.parent / "bench-throughput-small.annot"
    shutil.rmtree(small_copy, ignore_errors=True)
    shutil.copytree(args.store, small_copy)
    small = run_annotate(small_copy, small_folder)
    shutil.rmtree(small_copy, ignore_errors=True)
    print("annotate, a tenth", small, flush=True)
    modes: dict[str, list[float]] = {"in line": [], "in a process": []}
    for _ in range(2):  # side by side, alternating: decoding in line against a decoding process ahead of the network
        for label, process in (("in line", False), ("in a process", True)):
            shutil.copytree(args.store, small_copy)
            modes[label].append(run_annotate(small_copy, small_folder, process)["photos_per_s"])
            shutil.rmtree(small_copy, ignore_errors=True)
    decoding = {label: statistics.median(rates) for label, rates in modes.items()}
    print("decoding", modes, flush=True)
    first = run_annotate(copy, folder)
    print("annotate", first, flush=True)
    again = run_annotate(copy, folder)
    print("rerun", again, flush=True)
    results = {"first_run": first, "rerun_nothing_changed": again, "first_run_a_tenth": small,
               "decoding_photos_per_s": decoding, "decoding_runs": modes, **side,
               "photo": "4000 x 3000 JPEG, quality 90", "distinct_files": args.distinct}
    write_results("throughput", results, ["run", "photos", "seconds", "photos/s", "peak memory (MiB)"], [
        (f"| annotate, first run | {small['photos']:,} | {small['seconds']} | {small['photos_per_s']} | "
         f"{small['peak_mib']} |"),
        (f"| annotate, first run | {first['photos']:,} | {first['seconds']} | {first['photos_per_s']} | "
         f"{first['peak_mib']} |"),
        (f"| annotate, rerun (unchanged) | {again['photos']:,} | {again['seconds']} | {again['photos_per_s']} | "
         f"{again['peak_mib']} |"),
    ])
    shutil.rmtree(copy, ignore_errors=True)


if __name__ == "__main__":
    main()
