"""Scale: synthetic features of the real width with planted tag structure, at 10k, 100k and 1M images.

    python benchmarks/scale.py [--sizes 10000,100000,1000000] [--budget 4GB] [--autofaiss PYTHON]

Each size runs in its own process (so peak memory is that size's alone) through the same library functions that
``annot index`` and ``annot query`` use out of core: features in float16 parts of a ``FeatureCache`` (memory-mapped),
the streaming statistics pass (``streamed_statistics``), ``LinearCCA.fit_statistics``, the projection pass into a
memory-mapped file (``project_to_file``), the index chosen by ``choose_factory`` for the memory budget, trained on a
sample and filled in chunks (``build_ann``), its search setting tuned until CCA-KNN's tags from 2,000-image pools
agree with those from exact pools on 90% of the words (``tune_search``, the default; and again speed first, tuned to recall@10
≥ 0.95 as with ``--tag-agreement 0``, and at 0.99); then
1,000 new images annotated with CCA-KNN over their candidate pools (``pooled_tagger``), batch by batch as
``annot.methods.cca_knn`` does for large corpora. Tags come from an in-memory 0/1 matrix instead of DuckDB (the database
side is not what grows here). Writes benchmarks/results/scale.json and .md.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import write_results

P, V, TAGS_PER_IMAGE, CHUNK = 1280, 260, (1, 5), 16_384
QUERIES, DEPTH, K, TAU, ALPHA = 1000, 2000, 16, 0.1, 0.5


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic(n: int, seed: int, prototypes: np.ndarray, popularity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """n images: 1-5 tags drawn by a Zipf-like popularity; features = mean of the tags' prototypes + noise."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(TAGS_PER_IMAGE[0], TAGS_PER_IMAGE[1] + 1, n)
    labels = np.zeros((n, V), bool)
    for c in range(TAGS_PER_IMAGE[0], TAGS_PER_IMAGE[1] + 1):
        rows = np.flatnonzero(counts == c)
        tags = np.argsort(rng.random((len(rows), V)) ** (1 / popularity), axis=1)[:, -c:]  # weighted, no repeats
        labels[rows[:, None], tags] = True
    X = (labels @ prototypes) / counts[:, None] + 0.6 * rng.standard_normal((n, P), dtype=np.float32)
    return np.maximum(X, 0).astype(np.float32), labels  # post-ReLU, like CNN features


def one(n: int, budget: str, folder: Path, autofaiss: str | None) -> dict[str, object]:
    import faiss
    from scipy import sparse

    from annot.features.cache import FeatureCache
    from annot.features.text import normalize_features
    from annot.fitting.fit import project_to_file, streamed_statistics
    from annot.indexer.build import build_image_index
    from annot.progress import NoProgress
    from annot.projection import correlation_rows
    from annot.projection.cca import LinearCCA
    from annot.retrieval.ann import ADD_CHUNK, AGREEMENT_TARGET, choose_factory, exact_search, recall_at, tag_agreement
    from annot.retrieval.scoring import pooled_tagger
    from annot.settings import ScoringSettings, parse_bytes

    rng = np.random.default_rng(0)
    prototypes = rng.gamma(0.5, 1.0, (V, P)).astype(np.float32)
    popularity = 1.0 / np.arange(1, V + 1) ** 0.8
    out: dict[str, object] = {"n": n, "p": P, "vocabulary": V}

    t = time.perf_counter()
    cache = FeatureCache(folder / "features", P, "float16")
    labels = np.zeros((n, V), bool)
    for i, lo in enumerate(range(0, n, CHUNK)):
        X, y = synthetic(min(CHUNK, n - lo), 1 + i, prototypes, popularity)
        cache.write_part(X, np.arange(lo, lo + len(X), dtype=np.int64), {})
        labels[lo : lo + len(X)] = y
    out["generate_seconds"] = round(time.perf_counter() - t, 1)
    out["features_on_disk_mb"] = round(sum(f.stat().st_size for f in (folder / "features").iterdir()) / 2**20, 1)
    E = np.zeros((V, 1), np.float32)
    has_vector = np.ones(V, bool)

    def chunks():  # type: ignore[no-untyped-def]
        for ids, x in cache.iter_parts():
            yield ids, np.asarray(x, np.float32), labels[ids]

    t = time.perf_counter()
    stats, used, _ = streamed_statistics(chunks, E, has_vector, "bv", "power")
    out["statistics_seconds"], out["peak_mb_after_statistics"] = round(time.perf_counter() - t, 1), round(peak_mb())
    t = time.perf_counter()
    cca = LinearCCA(None, 0.3, 0.3).fit_statistics(stats)  # type: ignore[arg-type]
    k = len(cca.canonical_correlations_)
    out["fit_seconds"], out["components"] = round(time.perf_counter() - t, 2), k
    t = time.perf_counter()
    rows, ids = project_to_file(chunks, cca, E, has_vector, "bv", "power", "image", used, k, folder / "rows.npy")
    out["project_seconds"], out["peak_mb_after_projection"] = round(time.perf_counter() - t, 1), round(peak_mb())

    factory = choose_factory(n, k, parse_bytes(budget))
    frequency = labels.sum(axis=0).astype(np.int64)  # loaded once with the store, as StoreModel does
    labels_csr = sparse.csr_matrix(labels)
    tagger = pooled_tagger(labels_csr, frequency, K, TAU, ALPHA)  # ids are label rows here
    Xq, _ = synthetic(QUERIES, 10_000, prototypes, popularity)  # new images, not in the index
    T = correlation_rows(cca.transform(normalize_features(Xq, "power")))

    def row_chunks():  # type: ignore[no-untyped-def]
        return ((np.asarray(rows[lo : lo + ADD_CHUNK]), ids[lo : lo + ADD_CHUNK]) for lo in range(0, n, ADD_CHUNK))

    exact_similarity, exact = exact_search(row_chunks, T, DEPTH)
    exact_tags = tagger((1.0 - exact_similarity).astype(np.float32), exact)
    for mode, agreement in (("exact tags", 0.99), ("default", AGREEMENT_TARGET), ("speed", 0.0)):
        r: dict[str, object] = {"tag_agreement_target": agreement}
        t = time.perf_counter()
        scoring = ScoringSettings(k=K, temperature=TAU, frequency_power=ALPHA, depth=DEPTH)
        index, info = build_image_index(factory, rows, ids, NoProgress(), K, DEPTH, labels[ids], scoring,
                                        agreement)  # trains, fills, tunes
        r["index_build_and_check_seconds"] = round(time.perf_counter() - t, 1)
        r["search"], r["recall_at_10_indexed"] = info.search, info.recall_at_10
        r["recall_at_depth_indexed"], r["tag_agreement_indexed"] = info.recall_at_depth, info.tag_agreement
        r["tuning"] = info.tried  # (setting, agreement or recall@10) for every setting tried
        if mode == "exact tags":
            out["index"] = factory
            faiss.write_index(index, str(folder / "index.faiss"))
            out["index_mb"] = round((folder / "index.faiss").stat().st_size / 2**20, 1)
            out["peak_mb_after_index"] = round(peak_mb())
        t = time.perf_counter()
        similarity, found = index.search(T, DEPTH)
        r["search_seconds"] = round(time.perf_counter() - t, 3)
        tags = tagger((1.0 - similarity).astype(np.float32), found)  # pooled CCA-KNN, 64 queries at a time
        r["annotate_images_per_second"] = round(QUERIES / (time.perf_counter() - t), 1)
        r["annotated"] = int((tags[:, 0] >= 0).sum())
        r["tag_agreement_new_queries"] = round(tag_agreement(exact_tags, tags), 4)
        r["recall_at_10_new_queries"] = round(recall_at(index, T, np.full(QUERIES, -1), exact, 10), 4)
        r["recall_at_depth_new_queries"] = round(recall_at(index, T, np.full(QUERIES, -1), exact, DEPTH), 4)
        out[mode] = r
        del index
        if factory == "Flat":
            break  # nothing to tune: the two modes are the same index
    out["peak_mb"] = round(peak_mb())

    if autofaiss:  # ids are row positions here, as in the autofaiss index
        out["autofaiss"] = run_autofaiss(autofaiss, folder / "rows.npy", T, exact, budget, folder)
    return out


AUTOFAISS = """
import json, sys, time
import numpy as np
from autofaiss import build_index
folder, budget = sys.argv[1], sys.argv[2]
start = time.perf_counter()
index, info = build_index(embeddings=folder + "/emb", save_on_disk=False, metric_type="ip", max_index_memory_usage=budget,
                          current_memory_available="12G", min_nearest_neighbors_to_retrieve=10, verbose=40)
seconds = time.perf_counter() - start
T, exact = np.load(folder + "/queries.npy"), np.load(folder + "/exact.npy")
_, found = index.search(T, 10)
recall = float(np.mean([len(set(exact[q][:10].tolist()) & set(found[q].tolist())) / 10 for q in range(len(T))]))
start = time.perf_counter()
_, deep = index.search(T, 2000)
per_second = round(len(T) / (time.perf_counter() - start), 1)
at_depth = float(np.mean([len(set(exact[q][:2000].tolist()) & set(deep[q].tolist())) / 2000 for q in range(len(T))]))
print(json.dumps({"index": (info or {}).get("index_key"), "build_seconds": round(seconds, 1),
                  "recall_at_10_new_queries": round(recall, 4), "recall_at_2000_new_queries": round(at_depth, 4),
                  "search_2000_per_second": per_second}))
"""


def run_autofaiss(python: str, rows_file: Path, T: np.ndarray, exact: np.ndarray, budget: str, folder: Path) -> dict[str, object]:
    """autofaiss (in its own interpreter: it pins an older numpy) on the same vectors and queries: its own index
    choice and build time, and recall@10 of the same new queries against the same exact neighbours."""
    (folder / "emb").mkdir(exist_ok=True)
    (folder / "emb" / "rows.npy").symlink_to(rows_file)
    np.save(folder / "queries.npy", T)
    np.save(folder / "exact.npy", exact)
    done = subprocess.run([python, "-c", AUTOFAISS, str(folder), budget], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--budget", default="4GB")
    parser.add_argument("--autofaiss", metavar="PYTHON", help="an interpreter with autofaiss installed, to compare with")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.budget, args.folder, args.autofaiss)))
        return
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        folder = Path(tempfile.mkdtemp(prefix=f"annot-scale-{n}-"))
        try:
            command = [sys.executable, __file__, "--one", str(n), "--folder", str(folder), "--budget", args.budget]
            done = subprocess.run(command + (["--autofaiss", args.autofaiss] if args.autofaiss else []), capture_output=True,
                                  text=True, check=True)
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    head = ["images", "index", "tuned for", "search setting", "statistics (s)", "fit (s)", "projection (s)",
            "index build + tuning (s)", "index MB", "features MB (float16)", "peak MB", "recall@10 (new queries)",
            f"recall@{DEPTH:,} (new queries)", "tags as exact search (new queries)", "annotate img/s"]
    lines = []
    for r in results:
        for mode in ("exact tags", "default", "speed"):
            if mode not in r:
                continue
            m = r[mode]
            tuned = f"tags (agreement ≥ {m['tag_agreement_target']})" if mode != "speed" else "speed (recall@10 ≥ 0.95)"
            lines.append(f"| {r['n']:,} | {r['index']} | {tuned if r['index'] != 'Flat' else 'exact'} | {m['search']} | "
                         f"{r['statistics_seconds']} | {r['fit_seconds']} | {r['project_seconds']} | "
                         f"{m['index_build_and_check_seconds']} | {r['index_mb']} | {r['features_on_disk_mb']} | {r['peak_mb']} | "
                         f"{m['recall_at_10_new_queries']} | {m['recall_at_depth_new_queries']} | "
                         f"{m['tag_agreement_new_queries']} | {m['annotate_images_per_second']} |")
    write_results("scale", results, head, lines)


if __name__ == "__main__":
    main()
