"""CNN-R on Corel-5k, for each word-vector source and regression target, in one run.

    python benchmarks/cnnr.py [--data ../shared/data/corel5k] [--store out/corel5k.annot] [--epochs 20]
                              [--words glove-50,minilm] [--targets raw,whitened]

Each variant trains `annot train-cnnr` in its own copy of the store (``<store>-cnnr-<words>-<target>.annot``; a
copy for other word vectors is re-indexed with them, reusing the cached features, and every copy reuses the
cached trunk activations). The variant with the highest F1 on its validation images (held-out *training* images,
annotated as `annot query --method cnn-r` does) is the chosen one; every variant is evaluated on the test split for
the report, which chooses nothing. Then: open-vocabulary answers of the first test images (from a GloVe variant:
MiniLM has no word list), and CCA-KNN on the chosen variant's fine-tuned penultimate features (``--encoder
cnnr:STORE``) with the base store's settings, beside CCA-KNN on the pretrained features. Rerunning resumes each
variant's training from its checkpoint (``--restart`` discards them).

Writes benchmarks/results/cnnr-<dataset>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from annot.cli.render import RichProgress
from annot.evaluation.evaluate import evaluate
from annot.evaluation.published import PUBLISHED
from annot.features.text import normalize_features
from annot.indexer import build_index
from annot.library.query import annotate_files
from annot.methods.cnnr.answer import answer_quality, word_index
from annot.methods.cnnr.network import read_model_file
from annot.methods.cnnr.train import CNNRConfig, targets, train_cnnr
from annot.model import StoreModel
from annot.schema import images
from annot.schema.queries import label_matrix
from annot.settings import BuildSettings, ScoringSettings, TextSettings
from annot.store import StoreDir
from common import write_results

EXAMPLES = 8  # the first test images, answered from the vocabulary and from all 400,000 GloVe words
RIDGES = (0.01, 0.03, 0.1, 0.3, 1.0)  # for the comparison: ridge regression from the store's frozen features
WORD_NAMES = {"glove-50": "GloVe-50", "minilm": "MiniLM"}


def variant_store(base: Path, train: Path, words: str, target: str) -> tuple[Path, bool]:
    """A copy of the base store for one variant (re-indexed when its word vectors differ); and whether it is new."""
    root = base.with_name(f"{base.stem}-cnnr-{words}-{target}.annot")
    if (root / "manifest.json").is_file():
        return root, False
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(base, root, ignore=shutil.ignore_patterns("cnnr"))  # no trained model; cached activations kept
    with StoreDir.open(root) as s:
        settings = s.manifest().settings
    if settings.text.words != words:
        build_index(train, root, settings.replace(text=settings.text.replace(words=words)), RichProgress())
    return root, True


def frozen_ridge(root: Path, validation_ids: list[int]) -> dict[str, Any]:
    """For comparison with the network: ridge regression from the store's frozen encoder features (power-normalised)
    to the same targets in the same word space, fitted on the same training images; λ chosen on the same validation
    images; answered the same way (the 5 nearest vocabulary words by centred cosine); then the test split."""
    with StoreDir.open(root) as store:
        manifest = store.manifest()
        assert manifest.cnnr is not None
        saved = read_model_file(store.path(manifest.cnnr.file.path))
        with store.db.connect() as conn:
            split = dict(conn.execute(select(images.c.id, images.c.split)).all())
        cache = StoreModel(store).feature_cache()
        cached = {int(i) for i in cache.cached_ids()}
        tag_ids = [int(t) for t in saved["tag_ids"]]
        train_ids = [i for i, s in split.items() if s == "train" and i in cached]
        test_ids = sorted(i for i, s in split.items() if s == "test" and i in cached)
        labels, test_truth = label_matrix(store.db, train_ids, tag_ids), label_matrix(store.db, test_ids, tag_ids)
        X, T = (normalize_features(cache.load(ids), "power").astype(np.float64) for ids in (train_ids, test_ids))
    E, has_vector = np.asarray(saved["E"]), np.asarray(saved["has_vector"], bool)
    Y, usable = targets(labels, E, has_vector)
    held = np.isin(train_ids, validation_ids)
    fit_rows = usable & ~held
    decoder, positions = word_index(saved["vocabulary"], E, has_vector)
    mx, my = X[fit_rows].mean(axis=0), Y[fit_rows].mean(axis=0)
    Xc = X[fit_rows] - mx
    gram, cross = Xc.T @ Xc, Xc.T @ (Y[fit_rows] - my)

    def quality(B: np.ndarray, Q: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
        return answer_quality(decoder, positions, (Q - mx) @ B + my, truth).as_percent()

    scored = []
    for ridge in RIDGES:
        B = np.linalg.solve(gram + ridge * np.eye(len(gram)), cross)
        scored.append((quality(B, X[held], labels[held])["F1"], ridge, B))
    validation_f1, ridge, B = max(scored, key=lambda r: r[0])
    return {"ridge": ridge, "validation_f1": validation_f1, "test": quality(B, T, test_truth),
            "encoder": manifest.encoder.name}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/corel5k"))
    parser.add_argument("--store", type=Path, default=Path("out/corel5k.annot"))
    parser.add_argument("--words", default="glove-50,minilm", help="word-vector sources to regress (comma-separated)")
    parser.add_argument("--targets", default="raw,whitened", help="regression targets (comma-separated)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--restart", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    dataset = args.data.name
    train, test = args.data / "train.jsonl", args.data / "test.jsonl"
    if not (args.store / "manifest.json").is_file():
        build_index(train, args.store, BuildSettings(text=TextSettings(vocabulary=args.data / "vocabulary.txt")))

    variants: list[dict[str, Any]] = []
    for words in args.words.split(","):
        for target in args.targets.split(","):
            root, new = variant_store(args.store, train, words, target)
            t = time.perf_counter()
            config = CNNRConfig(epochs=args.epochs, target=target, restart=args.restart or new)
            report = train_cnnr(root, config, progress=RichProgress())
            result = evaluate(root, test, scoring=ScoringSettings(method="cnn-r"))
            variants.append({"words": words, "target": target, "store": str(root), "seconds": round(report.seconds, 1),
                             "seconds_this_run": round(time.perf_counter() - t, 1), "best_epoch": report.best_epoch,
                             "validation_f1": report.best_validation_f1,
                             "validation_n_plus": report.history[report.best_epoch - 1]["validation_n_plus"],
                             "history": report.history, "test": result.summary.as_percent(), "run_id": result.run_id,
                             "frozen_ridge": frozen_ridge(root, report.validation_ids)})
            print(f"cnn-r {words} {target}: validation F1 {report.best_validation_f1} (epoch {report.best_epoch}), "
                  f"test {result.summary.as_percent()}, {report.seconds:.0f}s", flush=True)
    chosen = max(variants, key=lambda v: v["validation_f1"])
    print(f"chosen on validation images: {chosen['words']} {chosen['target']}", flush=True)

    examples: list[dict[str, Any]] = []
    glove = [v for v in variants if v["words"] == "glove-50"]
    if glove:
        shown = max(glove, key=lambda v: v["validation_f1"])
        model = StoreModel.open(Path(shown["store"]))
        try:
            entries = [json.loads(line) for line in test.read_text().splitlines()]
            images = [args.data / e["image"] for e in entries[:EXAMPLES]]
            closed = annotate_files(model, images, ScoringSettings(method="cnn-r"))
            opened = annotate_files(model, images, ScoringSettings(method="cnn-r", n_tags=8), open_vocabulary=True)
            vocabulary = set(model.vocabulary)
        finally:
            model.close()
        truth = {Path(e["image"]).name: e["tags"] for e in entries}
        examples = [{"image": Path(c.image).name, "truth": truth.get(Path(c.image).name, []), "target": shown["target"],
                     "vocabulary": [t.tag for t in c.tags], "open": [t.tag for t in o.tags],
                     "open_new_words": [t.tag for t in o.tags if t.tag not in vocabulary]}
                    for c, o in zip(closed.annotations, opened.annotations, strict=True)]
        for e in examples:
            print(e, flush=True)

    fine_store = args.store.with_name(f"{args.store.stem}-cnnr-features.annot")
    shutil.rmtree(fine_store, ignore_errors=True)
    t = time.perf_counter()
    with StoreDir.open(args.store) as s:
        base = s.manifest().settings
    build_index(train, fine_store, base.replace(encoder=base.encoder.replace(name=f"cnnr:{chosen['store']}")),
                RichProgress())
    fine_seconds = time.perf_counter() - t
    fine = evaluate(fine_store, test)
    pretrained = evaluate(args.store, test)
    print(f"cca-knn on fine-tuned features: {fine.summary.as_percent()}; pretrained: {pretrained.summary.as_percent()}",
          flush=True)

    with StoreDir.open(args.store) as s:
        encoder = s.manifest().encoder.name
    out = {"dataset": dataset, "variants": variants, "selected": {k: chosen[k] for k in ("words", "target", "store")},
           "cca_knn_fine_tuned": fine.summary.as_percent(), "fine_index_seconds": round(fine_seconds, 1),
           "cca_knn_pretrained": pretrained.summary.as_percent(), "pretrained_encoder": encoder, "examples": examples,
           "this_run_seconds": round(time.perf_counter() - started, 1)}
    rows = []
    p = PUBLISHED.get(dataset, {}).get("CNN-R (CaffeNet, W2V)")
    if p:
        rows.append(f"| paper: CNN-R (CaffeNet, word2vec) | | {p[0]} | {p[1]} | {p[2]} | {p[3]} | |")
    for v in variants:
        s = v["test"]
        mark = "**" if v is chosen else ""
        rows.append(f"| {mark}CNN-R (Lite0 top blocks, {WORD_NAMES.get(v['words'], v['words'])}, {v['target']} target)"
                    f"{mark} | {v['validation_f1']} / {v['validation_n_plus']} | {s['P']} | {s['R']} | {s['F1']} "
                    f"| {s['N+']} | {v['seconds']} |")
    for v in variants:
        r, s = v["frozen_ridge"], v["frozen_ridge"]["test"]
        rows.append(f"| for comparison: ridge (λ {r['ridge']}) from frozen {r['encoder']} features, "
                    f"{WORD_NAMES.get(v['words'], v['words'])}, {v['target']} target | {r['validation_f1']} | {s['P']} "
                    f"| {s['R']} | {s['F1']} | {s['N+']} | |")
    for name, s in ((f"CCA-KNN on pretrained {encoder} features (the store's settings)", pretrained.summary.as_percent()),
                    ("CCA-KNN on the chosen CNN-R's fine-tuned features (same settings)", fine.summary.as_percent())):
        rows.append(f"| {name} | | {s['P']} | {s['R']} | {s['F1']} | {s['N+']} | |")
    write_results(f"cnnr-{dataset}", out, ["method", "validation F1 / N+", "P", "R", "F1", "N+", "training (s)"], rows)


if __name__ == "__main__":
    main()
