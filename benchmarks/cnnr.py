"""CNN-R on Corel-5k: train it in the store, evaluate it on the test split, show open-vocabulary answers, and index
the fine-tuned features for CCA-KNN (``--encoder cnnr:STORE``) with the same settings as the store's.

    python benchmarks/cnnr.py [--data ../shared/data/corel5k] [--store out/corel5k.annot] [--epochs 20]

Writes benchmarks/results/cnnr-<dataset>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from annot.cnnr.train import CNNRConfig, train_cnnr
from annot.evaluation.evaluate import evaluate
from annot.evaluation.published import PUBLISHED
from annot.indexer import IndexConfig, build_index
from annot.retrieval.model import AnnotationModel
from annot.retrieval.query import annotate_files
from annot.store import Store

EXAMPLES = 8  # the first test images, answered from the vocabulary and from all 400,000 GloVe words


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/corel5k"))
    parser.add_argument("--store", type=Path, default=Path("out/corel5k.annot"))
    parser.add_argument("--fine-store", type=Path, default=Path("out/corel5k-cnnr.annot"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--restart", action="store_true")
    args = parser.parse_args()
    dataset = args.data.name
    train, test = args.data / "train.jsonl", args.data / "test.jsonl"
    if not (args.store / "manifest.json").is_file():
        build_index(train, args.store, IndexConfig(vocabulary=args.data / "vocabulary.txt"))

    t = time.perf_counter()
    report = train_cnnr(train, args.store, CNNRConfig(epochs=args.epochs, restart=args.restart))
    train_seconds = time.perf_counter() - t
    print(f"trained in {report.seconds:.0f}s over all runs ({train_seconds:.0f}s this run): best epoch {report.best_epoch}, history {report.history}", flush=True)
    result = evaluate(args.store, test, method="cnn-r")
    print(f"cnn-r: {result.summary.as_percent()}", flush=True)

    model = AnnotationModel.open(args.store)
    try:
        images = [args.data / json.loads(line)["image"] for line in test.read_text().splitlines()[:EXAMPLES]]
        closed = annotate_files(model, images, method="cnn-r")
        opened = annotate_files(model, images, method="cnn-r", open_vocabulary=True, n_tags=8)
        vocabulary = set(model.vocabulary)
    finally:
        model.close()
    truth = {json.loads(line)["image"].split("/")[-1]: json.loads(line)["tags"] for line in test.read_text().splitlines()}
    examples = [{"image": Path(c.image).name, "truth": truth.get(Path(c.image).name, []),
                 "vocabulary": [t.tag for t in c.tags],
                 "open": [t.tag for t in o.tags], "open_new_words": [t.tag for t in o.tags if t.tag not in vocabulary]}
                for c, o in zip(closed.annotations, opened.annotations, strict=True)]
    for e in examples:
        print(e, flush=True)

    with Store.open(args.store, read_only=True) as s:
        base = s.manifest()["config"]
    config = IndexConfig(encoder=f"cnnr:{args.store}", vocabulary=args.data / "vocabulary.txt", text=base["text"],
                         normalization=base["normalization"], reg_x=base["reg_x"], reg_y=base["reg_y"], k=base["k"],
                         temperature=base["temperature"], frequency_power=base["frequency_power"])
    build_index(train, args.fine_store, config)
    fine = evaluate(args.fine_store, test)
    print(f"cca-knn on fine-tuned features: {fine.summary.as_percent()}", flush=True)
    baseline = evaluate(args.store, test)

    out = {"dataset": dataset, "train_seconds": round(report.seconds, 1), "report": report.to_dict(),
           "cnn_r": result.summary.as_percent(), "cca_knn_fine_tuned": fine.summary.as_percent(),
           "cca_knn_pretrained": baseline.summary.as_percent(), "examples": examples}
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / f"cnnr-{dataset}.json").write_text(json.dumps(out, indent=2))
    lines = ["| method | P | R | F1 | N+ |", "|---|---|---|---|---|"]
    p = PUBLISHED.get(dataset, {}).get("CNN-R (CaffeNet, W2V)")
    if p:
        lines.append(f"| paper: CNN-R (CaffeNet, word2vec) | {p[0]} | {p[1]} | {p[2]} | {p[3]} |")
    for name, s in (("annot: CNN-R (EfficientNet-Lite0, GloVe-50)", out["cnn_r"]),
                    ("annot: CCA-KNN on pretrained Lite0 features (the store's settings)", out["cca_knn_pretrained"]),
                    ("annot: CCA-KNN on CNN-R's fine-tuned features (same settings)", out["cca_knn_fine_tuned"])):
        lines.append(f"| {name} | {s['P']} | {s['R']} | {s['F1']} | {s['N+']} |")
    (results / f"cnnr-{dataset}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
