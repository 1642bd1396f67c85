"""Speed on this machine, measured side by side in one run (medians of repeats):

0. each packaged encoder's network run by torch and by ONNX Runtime (the default on the CPU), side by side, and
   how far their features differ;
1. feature extraction throughput (images/s) of each packaged encoder, decoding overlapped with the network
   (one decoder process) against decoding in line;
2. LinearCCA.fit on the Corel-5k training features against scikit-learn's CCA, same data, same components;
3. annotation throughput from stored features (images/s) for nn and cca-knn on the Corel-5k store;
4. one-image latency of `annot query` (decode + encode + search + score), in process and as a fresh command.

    python benchmarks/speed.py [--store out/corel5k.annot] [--data ../shared/data/corel5k] [--sections a,b]

Needs a Corel-5k store (`make demo` or benchmarks/corel5k.py) for sections 2-4. Writes
benchmarks/results/speed.json (sections not run keep their earlier numbers).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from annot.features.encoders import ImageEncoder, build_encoder
from annot.features.images import iter_batches
from annot.library.query import annotate_files
from annot.model import StoreModel
from annot.projection import LinearCCA
from annot.schema.queries import label_matrix
from annot.store import StoreDir

ENCODERS = ("efficientnet-lite0", "efficientnet-lite0-stages", "efficientnet-lite2")


def timed(fn, repeats: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def extract(paths: list[Path], encoder: ImageEncoder, workers: int) -> None:
    """Every image's features, as `annot index` extracts them (batches of 32), thrown away."""
    for batch in iter_batches(paths, encoder, 32, workers=workers):
        encoder.encode_sized(batch.sized)


def extraction(data: Path, n: int, repeats: int) -> dict[str, dict[str, float]]:
    paths = sorted((data / "images" / "train").glob("*.jpeg"))[:n]
    out = {}
    for name in ENCODERS:
        encoder = build_encoder(name)
        for workers, label in ((1, "overlapped"), (0, "inline")):
            def run(encoder: ImageEncoder = encoder, workers: int = workers) -> None:
                extract(paths, encoder, workers)
            run()  # warm-up
            seconds = statistics.median(timed(run, repeats))
            out[f"{name} ({label})"] = {"images_per_s": round(n / seconds, 1), "seconds": round(seconds, 2)}
            print(name, label, out[f"{name} ({label})"], flush=True)
    return out


def backends(data: Path, n: int, repeats: int) -> dict[str, dict[str, object]]:
    """Each packaged encoder's network run by torch and by ONNX Runtime on the same decoded batches, side by side:
    images/s of the network alone (median of repeats) and the largest difference between their features."""
    paths = sorted((data / "images" / "train").glob("*.jpeg"))[:n]
    out: dict[str, dict[str, object]] = {}
    for name in ENCODERS:
        torch_encoder, onnx_encoder = build_encoder(name), build_encoder(name)
        torch_encoder._runner = False  # type: ignore[attr-defined]  # torch runs it
        batches = [b.pixels for b in iter_batches(paths, torch_encoder, 32, workers=0)]
        first = [torch_encoder.encode(b) for b in batches]
        second = [onnx_encoder.encode(b) for b in batches]  # exports (or reads the cached export) first
        runner = onnx_encoder._runner  # type: ignore[attr-defined]
        assert runner, "ONNX Runtime is not in use (is onnxruntime installed?)"
        row: dict[str, object] = {"max_abs_difference": float(max(np.abs(a - b).max() for a, b in zip(first, second)))}
        for label, encoder in (("torch", torch_encoder), ("onnxruntime", onnx_encoder)):
            seconds = statistics.median(timed(lambda e=encoder, bs=batches: [e.encode(b) for b in bs], repeats))
            row[f"{label}_images_per_s"] = round(n / seconds, 1)
        row["speedup"] = round(float(row["onnxruntime_images_per_s"]) / float(row["torch_images_per_s"]), 2)  # type: ignore[arg-type]
        out[name] = row
        print(name, row, flush=True)
    return out


def cca_fit(store: Path, components: int, repeats: int) -> dict[str, object]:
    from sklearn.cross_decomposition import CCA

    with StoreDir.open(store) as s:
        model = StoreModel(s)
        ids = sorted(model.ids.tolist())
        X = model.feature_cache().load(ids).astype(np.float64)
        Y = label_matrix(s.db, ids, model.tag_ids).astype(np.float64)
    ours_all = statistics.median(timed(lambda: LinearCCA(None, 0.3, 0.3).fit(X, Y), repeats))
    ours_k = statistics.median(timed(lambda: LinearCCA(components, 1e-4, 1e-4).fit(X, Y), repeats))
    t = time.perf_counter()
    sk = CCA(n_components=components, max_iter=500, scale=False).fit(X, Y)
    sk_seconds = time.perf_counter() - t
    ours = LinearCCA(components, 1e-4, 1e-4).fit(X, Y)
    # canonical correlations each method achieves on the training data
    Xs, Ys = sk.transform(X, Y)
    sk_rho = np.array([np.corrcoef(Xs[:, j], Ys[:, j])[0, 1] for j in range(components)])
    U, V = ours.transform(X), ours.transform_y(Y)
    our_rho = np.array([np.corrcoef(U[:, j], V[:, j])[0, 1] for j in range(components)])
    result = {
        "shape": f"X {X.shape[0]}x{X.shape[1]}, Y {Y.shape[0]}x{Y.shape[1]} (BV)",
        "components": components,
        "linear_cca_all_260_seconds": round(ours_all, 3),
        f"linear_cca_{components}_seconds": round(ours_k, 3),
        f"sklearn_cca_{components}_seconds": round(sk_seconds, 2),
        "speedup": round(sk_seconds / ours_k, 1),
        "ours_first5_corr": [round(float(v), 4) for v in our_rho[:5]],
        "sklearn_first5_corr": [round(float(v), 4) for v in sk_rho[:5]],
        "mean_abs_corr_difference": round(float(np.mean(np.abs(np.abs(our_rho) - np.abs(sk_rho)))), 4),
    }
    print(result, flush=True)
    return result


def annotation(store: Path, repeats: int) -> dict[str, object]:
    model = StoreModel.open(store)
    try:
        _, rows = model.store.db.read_sql("SELECT id FROM images WHERE split = 'test' ORDER BY id")
        X = model.feature_cache().load([r[0] for r in rows])
        out: dict[str, object] = {"queries": len(X), "index_size": model.index.ntotal}
        for method in ("nn", "cca-knn"):
            scoring = model.settings.scoring.replace(method=method)
            seconds = statistics.median(timed(lambda scoring=scoring: model.predict(X, scoring), repeats))
            out[method] = {"images_per_s": round(len(X) / seconds, 1), "seconds": round(seconds, 3)}
            print(method, out[method], flush=True)
        return out
    finally:
        model.close()


def latency(store: Path, image: Path, repeats: int) -> dict[str, float]:
    model = StoreModel.open(store)
    try:
        annotate_files(model, [image])  # builds the encoder once
        in_process = statistics.median(timed(lambda: annotate_files(model, [image]), repeats))
    finally:
        model.close()
    command = [sys.executable, "-m", "annot.cli.main", "query", str(image), "--store", str(store)]
    cold = statistics.median(timed(lambda: subprocess.run(command, check=True, capture_output=True), 3))
    out = {"in_process_ms": round(1000 * in_process, 1), "fresh_command_s": round(cold, 2)}
    print("latency", out, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("out/corel5k.annot"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/corel5k"))
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--components", type=int, default=32)
    sections = ("backends", "extraction", "cca_fit", "annotation", "latency")
    parser.add_argument("--sections", default=",".join(sections), help=f"comma-separated, of: {', '.join(sections)}")
    args = parser.parse_args()
    wanted = args.sections.split(",")
    if unknown := sorted(set(wanted) - set(sections)):
        parser.error(f"unknown sections {', '.join(unknown)} (known: {', '.join(sections)})")
    run = {
        "backends": lambda: backends(args.data, args.images, repeats=3),
        "extraction": lambda: extraction(args.data, args.images, repeats=3),
        "cca_fit": lambda: cca_fit(args.store, args.components, repeats=5),
        "annotation": lambda: annotation(args.store, repeats=5),
        "latency": lambda: latency(args.store, min((args.data / "images" / "test").glob("*.jpeg")), repeats=10),
    }
    folder = Path(__file__).parent / "results"
    folder.mkdir(exist_ok=True)
    saved = folder / "speed.json"
    results = json.loads(saved.read_text()) if saved.is_file() else {}
    results["machine"] = {"cores": torch.get_num_threads(), "torch": torch.__version__}
    results.update({name: run[name]() for name in sections if name in wanted})
    saved.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
