"""The bad-input battery of docs/faults.md, run by hand as a user would: each case as a fresh `annot` command on a
small real store (60 Corel-5k training images, the default encoder), with its exit code, its first stderr line,
whether a Python traceback appeared, and whether the store changed (the manifest and the database, by hash).

    python benchmarks/faults.py [--data ../shared/data/corel5k] [--work /tmp/annot-faults]

Writes benchmarks/results/faults.json and .md. A case passes when its exit code is the one expected, no traceback
appeared, and the store is unchanged where the case must not change it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from common import write_results


def annot(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "annot.cli.main", *map(str, args)], capture_output=True, text=True,
                          timeout=600, check=False)


def state(store: Path) -> str:
    digest = hashlib.sha256()
    for name in ("manifest.json", "annot.duckdb"):
        path = store / name
        digest.update(path.read_bytes() if path.exists() else b"-")
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/corel5k"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/annot-faults"))
    args = parser.parse_args()
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data = args.data.resolve()
    lines = (data / "train.jsonl").read_text().splitlines()[:60]
    corpus = work / "train.jsonl"
    corpus.write_text("".join(json.dumps({**json.loads(x), "image": str(data / json.loads(x)["image"])}) + "\n"
                              for x in lines))
    store = work / "s.annot"
    built = annot("index", corpus, "--store", store, "--components", "16")
    assert built.returncode == 0, built.stderr
    photos = work / "photos"
    photos.mkdir()
    for src in sorted((data / "images" / "test").glob("*.jpeg"))[:5]:
        shutil.copy(src, photos / src.name)
    assert annot("annotate", photos, "--store", store).returncode == 0

    (work / "bad.jsonl").write_text('{"image": "a.jpg", "tags": ["sky"]}\n{"image": \n')
    (work / "open.csv").write_text('image,tags\n"a.jpg,sky\nb.jpg,sea\n')
    (work / "text.jpg").write_text("not an image")
    (work / "empty").mkdir()
    (work / "a-file").write_text("x")
    broken = photos / (min(p.name for p in photos.glob("*.jpeg")) + ".xmp")
    fix = work / "fix.jsonl"
    fix.write_text('{"image": "nowhere.jpg", "confirm": ["sky"]}\n')
    photo = min(photos.glob("*.jpeg"))
    cases: list[tuple[str, list[str | Path], int, bool]] = [  # name, arguments, expected exit, may change the store
        ("a setting out of range", ["query", photo, "--store", store, "--k", "0"], 2, False),
        ("a confidence that is not one", ["query", photo, "--store", store, "--min-confidence", "sure"], 2, False),
        ("bad JSON in a corpus", ["add", work / "bad.jsonl", "--store", store], 1, False),
        ("a quote left open in a CSV", ["add", work / "open.csv", "--store", store], 1, False),
        ("a missing corpus", ["add", work / "none.jsonl", "--store", store], 1, False),
        ("a text file named .jpg to query", ["query", work / "text.jpg", "--store", store], 1, False),
        ("a missing store", ["info", "--store", work / "none.annot"], 1, False),
        ("sql that writes", ["sql", "DELETE FROM images", "--store", store], 1, False),
        ("sql that reads a file", ["sql", "SELECT * FROM read_text('/etc/passwd')", "--store", store], 1, False),
        ("annotate a folder without photos", ["annotate", work / "empty", "--store", store], 1, False),
        ("annotate a missing path", ["annotate", work / "none.jpg", "--store", store], 1, False),
        ("annotate an unreadable file", ["annotate", work / "text.jpg", "--store", store], 0, True),
        ("search for a word without a vector", ["search", "qwxzzy", "--mode", "space", "--store", store], 1, False),
        ("search with no words", ["search", "--store", store], 1, False),
        ("correct an unknown photo", ["correct", "--from", fix, "--store", store], 1, False),
        ("correct with an unknown tag", ["correct", photo, "--add", "zebra-crossing", "--store", store], 1, False),
        ("export where nothing can be written", ["export", "--store", store, "--out", work / "a-file" / "x"], 1,
         False),
        ("export into a sidecar that is not XMP", ["export", "--store", store], 1, False),
        ("export in an unknown format", ["export", "--store", store, "--format", "pdf"], 1, False),
        ("serve a missing store", ["serve", "--store", work / "none.annot"], 1, False),
    ]
    rows, results = [], []
    for name, arguments, expected, may_change in cases:
        if name == "export into a sidecar that is not XMP":
            broken.write_text("<x:xmpmeta this is not xml")
        before = state(store)
        result = annot(*arguments)
        changed = state(store) != before
        first = (result.stderr.strip().splitlines() or [""])[0]
        traceback = "Traceback" in result.stderr or "Traceback" in result.stdout
        ok = result.returncode == expected and not traceback and (may_change or not changed)
        if name == "export into a sidecar that is not XMP":
            ok = ok and broken.read_text() == "<x:xmpmeta this is not xml"
        results.append({"case": name, "exit": result.returncode, "expected": expected, "traceback": traceback,
                        "store_changed": changed, "message": first, "ok": ok})
        rows.append(f"| {name} | {result.returncode} | {'yes' if traceback else 'no'} | "
                    f"{'yes' if changed else 'no'} | {first.replace('|', '/')[:110]} | {'ok' if ok else 'FAIL'} |")
        print(rows[-1], flush=True)
    write_results("faults", results, ["case", "exit", "traceback", "store changed", "message", "as expected"], rows)
    if not all(r["ok"] for r in results):
        raise SystemExit("some cases failed")


if __name__ == "__main__":
    main()
