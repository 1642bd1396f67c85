"""Re-scoring the library from its stored features: what `annot annotate` does after corrections, `annot add` or
`annot refit` changed the model, and what `annot annotate --retag` forces.

Annotates ``--photos`` Corel-5k images (copies under /tmp, each its own content) into a copy of the store, records
corrections of 20 photos (the model changes: their tags join the training index), then times, as fresh commands, the
re-scoring run (`annot annotate --store S`, no paths) and ``--repeats`` runs of `annot annotate --store S --retag`.
Reports the re-scoring rate (photos scored, written and indexed per second, from the run's own timing) and the
whole command's wall time, medians over the runs.

    python benchmarks/rescore.py [--store out/corel5k.annot] [--photos 5000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import write_results

WORK = Path("/tmp/annot-rescore")


def make_photos(data: Path, photos: int) -> Path:
    """``photos`` files: the Corel-5k images, then re-encoded copies of them (a different content each)."""
    from PIL import Image

    sources = sorted((data / "images").rglob("*.jpeg"))
    folder = WORK / f"photos-{photos}"
    if folder.exists() and len(list(folder.rglob("*.jpg"))) == photos:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    for i in range(photos):
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        source = sources[i % len(sources)]
        if i < len(sources):
            shutil.copy(source, sub / f"IMG_{i:05d}.jpg")
        else:
            Image.open(source).save(sub / f"IMG_{i:05d}.jpg", quality=80 + i // len(sources))
    return folder


def annot(*args: str) -> tuple[float, dict[str, object]]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "annot.cli.main", *args, "--json"], capture_output=True, text=True,
                          check=True)
    return time.perf_counter() - start, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("out/corel5k.annot"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/corel5k"))
    parser.add_argument("--photos", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    folder = make_photos(args.data.resolve(), args.photos)
    store = WORK / "store.annot"
    shutil.rmtree(store, ignore_errors=True)
    shutil.copytree(args.store, store)
    first_seconds, first = annot("annotate", str(folder), "--store", str(store))
    print(f"annotated {first['annotated']} photos in {first_seconds:.0f} s")
    lines = [json.dumps({"image": str(p), "confirm": [], "add": ["holiday"]})
             for p in sorted(folder.rglob("*.jpg"))[:20]]
    corrections = WORK / "corrections.jsonl"
    corrections.write_text("\n".join(lines) + "\n")
    annot("correct", "--from", str(corrections), "--store", str(store))
    runs = []
    wall, after = annot("annotate", "--store", str(store))
    runs.append({"kind": "after corrections", "wall_seconds": wall, **after})
    for _ in range(args.repeats):
        wall, forced = annot("annotate", "--store", str(store), "--retag")
        runs.append({"kind": "--retag", "wall_seconds": wall, **forced})
    rates = [float(r["rescored_per_second"]) for r in runs]  # type: ignore[arg-type]
    walls = [r["wall_seconds"] for r in runs]
    data = {"photos": args.photos, "first_annotate_seconds": first_seconds, "runs": runs,
            "median_rescored_per_second": statistics.median(rates), "median_wall_seconds": statistics.median(walls)}
    rows = [f"| {r['kind']} | {r['rescored']:,} | {r['tags_changed']:,} | {r['rescored_per_second']:,.0f} | "
            f"{r['wall_seconds']:.1f} |" for r in runs]
    write_results("rescore", data, ["run", "photos re-scored", "photos whose tags changed", "photos/s (re-scoring)",
                                    "command wall s"], rows)
    print(f"median {statistics.median(rates):,.0f} photos/s re-scored; median command {statistics.median(walls):.1f} s")


if __name__ == "__main__":
    main()
