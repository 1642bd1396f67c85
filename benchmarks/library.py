"""The photo library on Corel-5k, measured in one run:

1. confidence: the expected calibration error of the test tags' confidence (reliability bins, as `annot report`
   draws them), and P / R / F1 / N+ at the confidence cut chosen on the training images (`--min-confidence auto`)
   beside the fixed five tags;
2. text-to-image retrieval over the 499 test images annotated into the library (`annot annotate`): mean average
   precision with every vocabulary word that has a test image as the query, by tags, in the shared space and
   combined; precision@10 for words outside the vocabulary (each judged by vocabulary words it means);
3. search latency (median and 99th percentile, in process) at 5,000 photos (the training images and the library)
   and at 1,000,000 (synthetic library photos: random vectors and tags, written straight into a store copy).

    python benchmarks/library.py [--store out/corel5k.annot] [--data ../shared/data/corel5k] [--sections a,b]

Works on copies of the store under out/ (the store itself is not changed). Writes benchmarks/results/library.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

import annot
from annot.evaluation.report import run_reliability
from annot.store import StoreDir
from common import RESULTS, write_results

# words outside Corel-5k's vocabulary, and the vocabulary words a photo must have to count as showing them
OUTSIDE = {
    "automobile": ["cars"], "kitten": ["cat"], "airplane": ["plane", "jet"], "aircraft": ["plane", "jet"],
    "ship": ["ships", "boats"], "boat": ["boats", "ships"], "flower": ["flowers", "blooms"],
    "seashore": ["beach", "shore", "coast"], "jungle": ["forest"], "skyscraper": ["buildings", "skyline"],
    "lamb": ["sheep"], "stallion": ["horses", "mare", "foals"], "feline": ["cat", "tiger", "lion", "lynx", "cougar"],
    "waterfront": ["harbor", "shore", "coast", "dock"], "sunshine": ["sun", "sky"],
}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def library_store(store: Path, data: Path, name: str) -> Path:
    """A copy of ``store`` with the test images annotated into its library."""
    copy = store.parent / name
    if not copy.exists():
        shutil.copytree(store, copy)
        annot.open_store(copy).annotate([data / "images" / "test"])
    return copy


def confidence(store: Path, data: Path) -> dict[str, object]:
    copy = store.parent / "bench-confidence.annot"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(store, copy)
    api = annot.open_store(copy)
    fixed = api.evaluate(data / "test.jsonl")
    cut = api.evaluate(data / "test.jsonl", min_confidence="auto")
    out: dict[str, object] = {}
    with StoreDir.open(copy) as s:
        measured = s.manifest().calibration
        held_out = dict(measured.measured) if measured else {}
        for name, result in (("five tags", fixed), ("auto cut", cut)):
            reliability = run_reliability(s, result.run_id)  # type: ignore[arg-type]
            _, rows = s.db.read_sql(f"SELECT count(*) FROM predictions WHERE run_id = {result.run_id}")
            summary = result.summary.as_percent()
            out[name] = {**summary, "tags_per_image": round(rows[0][0] / summary["images"], 2),
                         "ece": reliability["ece"] if reliability else None,
                         "reliability": reliability["bins"] if reliability else None,
                         "min_confidence": result.params.get("min_confidence")}
    out["held_out_training"] = {"ece": held_out.get("held_out_reliability", {}).get("ece"),
                                "at_cut": held_out.get("held_out_at_cut"),
                                "images": held_out.get("held_out_images")}
    shutil.rmtree(copy, ignore_errors=True)
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "reliability"} for k, v in out.items()}), flush=True)
    return out


def average_precision(ranked: list[bool], positives: int) -> float:
    hits, total = 0, 0.0
    for rank, right in enumerate(ranked, 1):
        if right:
            hits += 1
            total += hits / rank
    return total / positives if positives else 0.0


def test_truth(data: Path) -> dict[str, set[str]]:
    """Each Corel-5k test image's path (as the library holds it) and its tags."""
    truth: dict[str, set[str]] = {}
    for line in (data / "test.jsonl").read_text().splitlines():
        entry = json.loads(line)
        truth[str((data / entry["image"]).resolve())] = set(entry["tags"])
    return truth


def retrieval(store: Path, data: Path) -> dict[str, object]:
    copy = library_store(store, data, "bench-library.annot")
    truth = test_truth(data)
    api = annot.open_store(copy)
    vocabulary = api.model().vocabulary
    words = [w for w in vocabulary if any(w in t for t in truth.values())]
    out: dict[str, object] = {"queries": len(words), "photos": len(truth)}
    for mode in ("tags", "space", "combined"):
        aps = []
        precision, recall = [], []
        for word in words:
            positives = sum(word in t for t in truth.values())
            hits = api.search([word], mode=mode, scope="library", n=len(truth), all_results=True)
            ranked = [word in truth.get(h.path, set()) for h in hits]
            aps.append(average_precision(ranked, positives))
            shown = [word in truth.get(h.path, set()) for h in api.search([word], mode=mode, scope="library",
                                                                            n=len(truth))]
            precision.append(sum(shown) / len(shown) if shown else 0.0)  # the list as returned, ended by the cut
            recall.append(sum(shown) / positives)
        out[f"map_{mode}"] = round(100 * float(np.mean(aps)), 2)
        out[f"list_precision_{mode}"] = round(100 * float(np.mean(precision)), 2)
        out[f"list_recall_{mode}"] = round(100 * float(np.mean(recall)), 2)
        print(mode, out[f"map_{mode}"], out[f"list_precision_{mode}"], out[f"list_recall_{mode}"], flush=True)
    chance = {w: sum(bool(t & set(m)) for t in truth.values()) / len(truth) for w, m in OUTSIDE.items()}
    outside = [w for w in OUTSIDE if w not in vocabulary]
    per_word: dict[str, dict[str, float]] = {w: {"chance": round(chance[w], 3)} for w in outside}
    for mode in ("tags", "space", "combined"):
        for word in outside:
            hits = api.search([word], mode=mode, scope="library", n=10)
            per_word[word][mode] = sum(bool(truth.get(h.path, set()) & set(OUTSIDE[word])) for h in hits) / 10
        out[f"outside_vocabulary_p_at_10_{mode}"] = round(100 * float(np.mean([per_word[w][mode] for w in outside])), 1)
    out["outside_vocabulary_chance"] = round(100 * float(np.mean([chance[w] for w in outside])), 1)
    out["outside_vocabulary"] = per_word
    print("outside the vocabulary", {k: v for k, v in out.items() if k.startswith("outside_vocabulary_")}, flush=True)
    return out


def latencies(api: annot.Store, words: list[str], repeats: int = 3) -> dict[str, dict[str, float]]:
    out = {}
    for mode in ("tags", "space", "combined"):
        api.search([words[0]], mode=mode)  # warm
        seconds = [t for _ in range(repeats) for t in (_timed(api, w, mode) for w in words)]
        out[mode] = {"median_ms": round(1000 * statistics.median(seconds), 2),
                     "p99_ms": round(1000 * percentile(seconds, 99), 2)}
    return out


def _timed(api: annot.Store, word: str, mode: str) -> float:
    start = time.perf_counter()
    api.search([word], mode=mode, n=20)
    return time.perf_counter() - start


def synthetic_library(store: Path, size: int, seed: int = 0, exact: bool = False) -> Path:
    """A copy of ``store`` whose library holds ``size`` synthetic photos, written straight into the database with
    DuckDB: five tags each with confidences, and rows of the shared space drawn around the store's own images (each a
    training image's row plus noise, so they gather as photos do). The library index is the one annot chooses for
    that size (``exact``: an exact one regardless)."""
    from annot.library import vectors
    from annot.model import StoreModel
    from annot.schema.layered import WORKING as W
    from annot.schema.layered import touched
    from annot.store.manifest import CollectionRecord

    copy = store.parent / f"bench-{size}{'-exact' if exact else ''}.annot"
    if copy.exists():
        return copy
    shutil.copytree(store, copy)
    model = StoreModel.open(copy)
    centres = model.training_rows(model.ids)
    model.close()
    with StoreDir.open(copy, write=True) as s:
        m = s.manifest()
        first = s.db.read_sql("SELECT coalesce(max(id), 0) + 1 FROM images")[1][0][0]
        n_words = len(m.vocabulary.tag_ids)
        tag_ids = ",".join(map(str, m.vocabulary.tag_ids))
        with s.db.begin() as conn:  # into the writer's working segment (annot.schema.layered), published on close
            conn.exec_driver_sql(
                f"INSERT INTO {W}.images (id, path, sha256, width, height, split, added_at) SELECT {first} + i, "
                f"'/synthetic/' || (i // 1000) || '/' || i || '.jpg', "
                f"md5(i::varchar), 4000, 3000, 'collection', now() FROM range({size}) t(i)")
            conn.exec_driver_sql(
                f"INSERT INTO {W}.photo_files (image_id, size, mtime_ns, state, error, annotated_at, model) "
                f"SELECT {first} + i, 2500000, 0, 'annotated', NULL, now(), 'synthetic' "
                f"FROM range({size}) t(i)")
            conn.exec_driver_sql(
                f"INSERT INTO {W}.annotations (image_id, rank, tag_id, score, confidence) SELECT {first} + i, r, "
                f"list_extract([{tag_ids}], 1 + ((i * 37 + r * 53) % {n_words})::int), 1.0 / r, 0.9 / r "
                f"FROM range({size}) t(i), range(1, 6) s(r)")
            for table in ("images", "photo_files", "annotations"):  # the new photos' groups, none in a layer below
                conn.exec_driver_sql(f'INSERT INTO {W}."{touched(table)}" SELECT {first} + i FROM range({size}) t(i)')
        rng = np.random.default_rng(seed)
        rows = centres[rng.integers(0, len(centres), size)]
        rows += rng.standard_normal(rows.shape).astype(np.float32) / np.sqrt(rows.shape[1])  # as far as the centre
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        ids = np.arange(first, first + size, dtype=np.int64)
        if exact:
            index, info = vectors.exact_index(rows.shape[1]), vectors.LibraryIndexInfo(trained_on=size)
            index.add_with_ids(rows, ids)
        else:
            index, info = vectors.build_library_index(rows, ids)
        del rows
        record = CollectionRecord(s.save_index("indexes/collection-synthetic.faiss", index),
                                  s.save_array("indexes/collection-synthetic.ids.npy", ids), size,
                                  factory=info.factory, projection=m.projection.file.path, tuning=info.to_dict())
        s.write_manifest(m.touched(collection=record))
    return copy


def latency(store: Path, data: Path, sizes: list[int]) -> dict[str, object]:
    out: dict[str, object] = {}
    five_k = library_store(store, data, "bench-library.annot")
    api = annot.open_store(five_k)
    words = list(api.model().vocabulary)[:60]
    start = time.perf_counter()
    out["5k"] = {"photos": int(api.manifest.index.ntotal + api.manifest.collection.ntotal),  # type: ignore[union-attr]
                 **latencies(api, words)}
    print("5k", out["5k"], f"({time.perf_counter() - start:.0f}s)", flush=True)
    for size in sizes:
        start = time.perf_counter()
        big = synthetic_library(store, size)
        built = time.perf_counter() - start
        api = annot.open_store(big)
        start = time.perf_counter()
        api.search(["sky"], n=1)
        loaded = time.perf_counter() - start
        out[f"{size // 1000}k"] = {"photos": size, "store_built_s": round(built, 1),
                                   "first_search_s (loads the model and the photo view)": round(loaded, 1),
                                   **latencies(api, words[:20])}
        print(size, out[f"{size // 1000}k"], flush=True)
        api.close()
        shutil.rmtree(big, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("out/corel5k.annot"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/corel5k"))
    parser.add_argument("--sizes", default="1000000", help="synthetic library sizes for the latency section")
    sections = ("confidence", "retrieval", "latency")
    parser.add_argument("--sections", default=",".join(sections), help=f"comma-separated, of: {', '.join(sections)}")
    args = parser.parse_args()
    wanted = args.sections.split(",")
    path = RESULTS / "library.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    run = {"confidence": lambda: confidence(args.store, args.data),
           "retrieval": lambda: retrieval(args.store, args.data),
           "latency": lambda: latency(args.store, args.data, [int(s) for s in args.sizes.split(",") if s])}
    for name in wanted:
        results[name] = run[name]()
    rows = []
    if "confidence" in results:
        for name in ("five tags", "auto cut"):
            r = results["confidence"][name]
            rows.append(f"| {name} | {r['P']} | {r['R']} | {r['F1']} | {r['N+']} | {r['tags_per_image']} | "
                        f"{100 * r['ece']:.1f} |")
    write_results("library", results, ["annotation", "P", "R", "F1", "N+", "tags/image", "ECE (points)"], rows)


if __name__ == "__main__":
    main()
