"""The paper's baselines on the same store and features, side by side with CCA-KNN, in one run.

    python benchmarks/baselines.py [--data ../shared/data/corel5k] [--store out/corel5k.annot] [--methods a,b,...]

Uses the store that ``benchmarks/corel5k.py`` (or ``make demo``) built, and indexes one with the defaults if there is
none. For every method: ``annot fit`` (hyperparameters chosen on held-out training images only; timed), then one
evaluation on the test split (recorded as a run in the store), and the annotation time of the test images alone
(median of 3 runs over features already extracted). Writes benchmarks/results/baselines-<dataset>.json and .md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from sqlalchemy import select

import annot
from annot.evaluation.published import PUBLISHED
from annot.methods.baselines import BASELINES
from annot.model import StoreModel
from annot.schema import images
from annot.store import StoreDir
from common import write_results

NAMES = {"freq": "frequency prior", "jec": "JEC", "2pknn": "2PKNN", "2pknn-ml": "2PKNN+ML", "tagprop": "TagProp σML",
         "mbrm": "MBRM", "svm-dmbrm": "SVM-DMBRM", "cca-knn": "CCA-KNN (store default)", "nn": "CCA + nn transfer"}


def annotation_seconds(store_root: Path, method: str, repeats: int = 3) -> tuple[float, int]:
    """Median seconds to annotate the store's test images from cached features (model loaded once)."""
    with StoreDir.open(store_root) as store:
        with store.db.connect() as conn:
            ids = [i for (i,) in conn.execute(select(images.c.id).where(images.c.split == "test").order_by(images.c.id))]
        model = StoreModel(store)
        X = model.feature_cache().load(ids)
        scoring = model.settings.scoring.replace(method=method)
        model.predict(X[:5], scoring)  # load (and for quick methods fit) once, outside the timing
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            model.predict(X, scoring)
            times.append(time.perf_counter() - t)
    return statistics.median(times), len(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/corel5k"))
    parser.add_argument("--store", type=Path, default=Path("out/corel5k.annot"))
    parser.add_argument("--methods", default=",".join(BASELINES) + ",nn,cca-knn")
    args = parser.parse_args()
    dataset = args.data.name
    store = annot.open_store(args.store)
    if not (args.store / "manifest.json").is_file():
        store.build(args.data / "train.jsonl", annot.BuildSettings(text=annot.TextSettings(
            vocabulary=args.data / "vocabulary.txt")))
    encoder = store.manifest.encoder.name
    rows: dict[str, dict[str, object]] = {}
    for method in args.methods.split(","):
        fit_seconds = 0.0
        params: dict[str, object] = {}
        if method in BASELINES:
            report = store.fit(method)
            fit_seconds, params = report.seconds, report.params
            print(f"{method}: fitted in {fit_seconds:.1f}s {params}", flush=True)
        result = store.evaluate(args.data / "test.jsonl", method=method)
        seconds, n = annotation_seconds(args.store, method)
        rows[method] = {"test": result.summary.as_percent(), "run_id": result.run_id, "params": params or result.params,
                        "fit_seconds": round(fit_seconds, 2), "annotate_seconds": round(seconds, 3),
                        "images_per_second": round(n / seconds, 1)}
        print(f"{method}: {result.summary.as_percent()}  annotate {n / seconds:.0f} img/s", flush=True)

    out = {"dataset": dataset, "encoder": encoder, "store": str(args.store), "rows": rows}
    lines = [f"| paper: {name} | {name.rsplit('(', 1)[-1].rstrip(')')} | {p} | {r} | {f} | {n_plus} | | |"
             for name, (p, r, f, n_plus) in PUBLISHED.get(dataset, {}).items()]
    for method, row in rows.items():
        s = row["test"]
        lines.append(f"| annot: {NAMES.get(method, method)} | {encoder} | {s['P']} | {s['R']} | {s['F1']} | {s['N+']} "  # type: ignore[index]
                     f"| {row['fit_seconds']} | {row['images_per_second']} |")
    write_results(f"baselines-{dataset}", out, ["method", "visual", "P", "R", "F1", "N+", "fit (s)", "annotate (img/s)"],
                  lines)


if __name__ == "__main__":
    main()
