"""Approximate image indexes on the real Corel-5k store: annotation quality and speed against the exact index.

    python benchmarks/approximate.py [--store out/corel5k.annot] [--data ../shared/data/corel5k]
                                     [--index 'IVF64,Flat' --index 'IVF64,Flat@0.99' --index HNSW32 ...]
                                     [--name approximate-corel5k]

The store (built by ``make demo`` or ``benchmarks/corel5k.py``, features cached) is copied once per index; each
copy is rebuilt with the store's own settings and ``--index FACTORY`` (no feature extraction: the features are
cached), which trains the index, tunes its search setting to recall ≥ 0.95 at the annotation depth and records it;
then the 499 test images are annotated from their stored features. ``FACTORY@A`` tunes to tag agreement A instead of
the default (``--tag-agreement``). Rows: the exact index as the store annotates by
default (every training image), the exact index over the same candidate pool an approximate index reads
(``pool_depth``: 2,000 images), and each approximate index. Writes benchmarks/results/<name>.json/.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from annot.evaluation.evaluate import evaluate
from annot.indexer import rebuild
from annot.retrieval.ann import pool_depth
from annot.settings import BuildSettings
from annot.store import StoreDir
from common import write_results

DEFAULT_INDEXES = ("IVF64,Flat", "IVF64,Flat@0.99", "OPQ64_320,IVF64,PQ64", "HNSW32", "HNSW32@0.99")
REPEATS = 3
SWEEP = (8, 16, 32, 48, 64)  # nprobe of the first IVF index, each evaluated once beside the tuned setting


def config_of(store: Path, index: str) -> BuildSettings:
    """The store's own settings with ``--index`` (``FACTORY`` or ``FACTORY@AGREEMENT``)."""
    factory, _, agreement = index.partition("@")
    with StoreDir.open(store) as opened:
        settings = opened.manifest().settings
    return settings.replace(index=settings.index.replace(
        kind=factory, tag_agreement=float(agreement) if agreement else BuildSettings().index.tag_agreement))


def measure(store: Path, test: Path, repeats: int = REPEATS, depth: int | None = None) -> dict[str, Any]:
    """Quality of one evaluation and the median annotation speed over ``repeats`` (features cached)."""
    seconds, result = [], None
    with StoreDir.open(store) as opened:
        manifest = opened.manifest()
    scoring = manifest.settings.scoring if depth is None else manifest.settings.scoring.replace(depth=depth)
    for _ in range(repeats):
        start = time.perf_counter()
        result = evaluate(store, test, scoring=scoring, record=False)
        seconds.append(time.perf_counter() - start)
    assert result is not None
    s = result.summary.as_percent()
    index, tuning = manifest.index, dict(manifest.index.tuning)
    return {"precision": s["P"], "recall": s["R"], "f1": s["F1"], "n_plus": s["N+"], "search": dict(index.search),
            "recall_at_10": tuning.get("recall_at_10"), "recall_at_depth": tuning.get("recall_at_depth"),
            "recall_depth": tuning.get("recall_depth"), "tag_agreement": tuning.get("tag_agreement"),
            "tuning": tuning.get("tried"),
            "images": result.summary.n_images,
            "evaluate_images_per_second": round(result.summary.n_images / statistics.median(seconds), 1)}


def sweep(store: Path, test: Path, factory: str, built: float, tuned: int) -> list[dict[str, Any]]:
    """The same index at other ``nprobe`` settings (the stored setting overridden in a copy's manifest)."""
    out = []
    for nprobe in (v for v in SWEEP if v != tuned):
        with StoreDir.open(store, write=True) as s:
            manifest = s.manifest()
            s.write_manifest(manifest.touched(index=replace(manifest.index, search={"nprobe": nprobe})))
        measured = {**measure(store, test, repeats=1), "recall_at_10": None, "recall_at_depth": None, "tag_agreement": None}
        out.append({"index": f"{factory}, nprobe {nprobe} (not the tuned setting)", "build_seconds": built, "swept": True,
                    **measured})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/corel5k"))
    parser.add_argument("--store", type=Path, default=Path("out/corel5k.annot"))
    parser.add_argument("--index", action="append", help="a FAISS index_factory string (repeatable)")
    parser.add_argument("--name", default="approximate-corel5k", help="results file name under benchmarks/results/")
    args = parser.parse_args()
    test = args.data / "test.jsonl"
    if not (args.store / "manifest.json").is_file():
        parser.error(f"{args.store}: no store; build it first (make demo, or benchmarks/corel5k.py)")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="annot-approximate-") as tmp:
        for factory in ("Flat", *(args.index or DEFAULT_INDEXES)):
            copy = Path(tmp) / "store.annot"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(args.store, copy)
            config = config_of(copy, factory)
            start = time.perf_counter()
            rebuild(copy, config)
            built = round(time.perf_counter() - start, 1)
            with StoreDir.open(copy) as s:
                n = s.manifest().index.ntotal
            if factory == "Flat":
                rows.append({"index": "Flat (every training image: the default)", "build_seconds": built, **measure(copy, test)})
                pool = pool_depth(n, config.scoring.k, config.scoring.depth, exact=False)
                rows.append({"index": f"Flat, the same {pool:,}-image pool", "build_seconds": built, **measure(copy, test, depth=pool)})
            else:
                rows.append({"index": factory, "build_seconds": built, **measure(copy, test)})
                if factory.startswith("IVF") and not any("swept" in r for r in rows):
                    rows.extend(sweep(copy, test, factory, built, rows[-1]["search"]["nprobe"]))
            for r in rows[-2:]:
                print(json.dumps(r), flush=True)
    head = ["index", "search", "recall@10", "recall at pool depth", "tag agreement (tuning)", "P", "R", "F1", "N+", "ΔF1 vs default",
            "ΔF1 vs same pool", "build + tuning (s)", "evaluate img/s"]
    lines = []
    default, same_pool = rows[0]["f1"], rows[1]["f1"]
    for r in rows:
        recall_depth = f"{r['recall_at_depth']} (@{r['recall_depth']:,})" if r["recall_at_depth"] is not None else ""
        recall_depth = recall_depth or ("exact" if r["index"].startswith("Flat") else "not measured")
        lines.append(f"| {r['index']} | {r['search'] or ''} | {r['recall_at_10'] or ('exact' if r['index'].startswith('Flat') else '')} | {recall_depth} | {r['tag_agreement'] or ''} | "
                     f"{r['precision']:.1f} | {r['recall']:.1f} | {r['f1']:.2f} | {r['n_plus']} | {r['f1'] - default:+.2f} | "
                     f"{r['f1'] - same_pool:+.2f} | {r['build_seconds']} | {r['evaluate_images_per_second']} |")
    write_results(args.name, rows, head, lines)


if __name__ == "__main__":
    main()
