"""`annot annotate` locally and on a Ray cluster, side by side: photos/s, and whether the tags agree.

Starts a Ray cluster on 127.0.0.1 (a head and one worker node, one CPU each: two worker processes), copies
``--photos`` Corel-5k images to a folder of their own, and annotates them into two copies of the store, first
locally, then with `--ray` (both as fresh commands, timed whole). The cluster is stopped at the end.

    python benchmarks/ray_annotate.py [--store out/corel5k.annot] [--photos 2000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import annot
from common import write_results

WORK = Path("/tmp/annot-ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def annotate(store: Path, folder: Path, *extra: str) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "annot.cli.main", "annotate", str(folder), "--store", str(store),
                           "--json", *extra], check=True, capture_output=True, text=True)
    return time.perf_counter() - started, json.loads(done.stdout)


def shown(store: Path) -> dict[str, list[str]]:
    with annot.open_store(store) as api:
        ids = dict(api.model().store.db.read_sql(
            "SELECT i.id, i.path FROM images i JOIN photo_files f ON f.image_id = i.id")[1])
        return {ids[i]: [t.tag for t in tags] for i, tags in api.photo_tags(sorted(ids)).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("out/corel5k.annot"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/corel5k"))
    parser.add_argument("--photos", type=int, default=2000)
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    folder = WORK / "photos"
    folder.mkdir(parents=True)
    for i, source in enumerate(sorted((args.data / "images" / "train").glob("*.jpeg"))[: args.photos]):
        shutil.copy(source, folder / f"IMG_{i:05d}.jpg")
    stores = {name: WORK / f"{name}.annot" for name in ("local", "ray")}
    for store in stores.values():
        shutil.copytree(args.store, store)
    ray_bin = str(Path(sys.executable).with_name("ray"))
    port = free_port()
    common = ["--num-cpus=1", "--disable-usage-stats"]
    subprocess.run([ray_bin, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                    "--include-dashboard=false", f"--temp-dir={WORK / 'ray'}", *common], check=True, capture_output=True)
    try:
        subprocess.run([ray_bin, "start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", *common],
                       check=True, capture_output=True)
        local_s, local = annotate(stores["local"], folder)
        ray_s, remote = annotate(stores["ray"], folder, "--ray", f"127.0.0.1:{port}")
    finally:
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, check=False)
    a, b = shown(stores["local"]), shown(stores["ray"])
    same = sum(a[p] == b.get(p) for p in a)
    results = {"photos": args.photos, "local": {"seconds": round(local_s, 1), "report": local},
               "ray": {"seconds": round(ray_s, 1), "report": remote, "workers": 2},
               "same_tags": same, "compared": len(a)}
    write_results("ray_annotate", results, ["run", "photos", "seconds (whole command)", "photos/s"], [
        f"| local | {local['annotated']:,} | {local_s:.1f} | {args.photos / local_s:.1f} |",
        f"| Ray, 2 worker processes on this machine | {remote['annotated']:,} | {ray_s:.1f} | {args.photos / ray_s:.1f} |",
    ])
    print(f"the same tags for {same:,} of {len(a):,} photos")


if __name__ == "__main__":
    main()
