"""CNN-R with the whole network fine-tuned on the CPU (`annot train-cnnr --full`), on Corel-5k, and CCA-KNN on the
fine-tuned network's features.

    python benchmarks/cnnr_full.py [--data ../shared/data/corel5k] [--store out/corel5k.annot]
                                   [--variants minilm:whitened:augment:0.001,...] [--size 160] [--epochs 10]

Each variant (``words:target:augment|plain:lr[:top-first][:SIZE]``, SIZE the input in pixels, default ``--size``)
trains in its own copy of the store (``<store>-cnnr-full-<variant>.annot``, re-indexed with its word vectors),
resuming from its checkpoint when rerun.
``top-first``: the top blocks and the new layer are trained first over cached trunk activations (`train-cnnr
--cached`, its own epochs chosen on the same validation images), and the whole network is fine-tuned from there
(``--init``; linear probing, then fine-tuning).
The variant with the highest F1 on its validation images (held-out *training* images) is chosen; every variant
is evaluated on the test split once, for the report. Then the store is indexed again with the chosen network's penultimate features as the
image encoder (``--encoder cnnr:STORE``), CCA-KNN's settings are chosen by cross-validation on the training images
(``annot tune``, five cover hold-outs, as `benchmarks/corel5k.py` does), and it is evaluated on the test split once.

Writes benchmarks/results/cnnr-full-<dataset>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

from annot.cli.render import RichProgress
from annot.evaluation.evaluate import evaluate
from annot.evaluation.published import PUBLISHED
from annot.evaluation.tune import searched, tune_store
from annot.indexer import build_index
from annot.methods.cnnr.train import CNNRConfig, train_cnnr
from annot.settings import BuildSettings, ScoringSettings, TextSettings
from annot.store import StoreDir
from common import write_results

WORD_NAMES = {"glove-50": "GloVe-50", "minilm": "MiniLM"}


def variant_store(base: Path, train: Path, name: str, words: str) -> Path:
    """A copy of the base store for one variant, re-indexed when its word vectors differ (kept when it exists)."""
    root = base.with_name(f"{base.stem}-cnnr-full-{name}.annot")
    if (root / "manifest.json").is_file():
        return root
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(base, root, ignore=shutil.ignore_patterns("cnnr"))  # cached trunk activations kept
    with StoreDir.open(root) as s:
        settings = s.manifest().settings
    if settings.text.words != words:
        build_index(train, root, settings.replace(text=settings.text.replace(words=words)), RichProgress())
    return root


def top_first(root: Path, target: str, epochs: int) -> tuple[Path, dict[str, Any]]:
    """The top blocks and the new layer trained over cached activations (once: kept as ``top-first.pt``)."""
    kept, summary = root / "top-first.pt", root / "top-first.json"
    if not kept.is_file():
        report = train_cnnr(root, CNNRConfig(target=target, full=False, epochs=epochs, patience=3),
                            progress=RichProgress())
        summary.write_text(json.dumps({"best_epoch": report.best_epoch, "validation_f1": report.best_validation_f1,
                                       "seconds": round(report.seconds, 1), "history": report.history}))
        shutil.copyfile(root / report.model_file, kept)
        (root / "models" / "cnnr" / "checkpoint.pt").unlink()  # the full fine-tuning's checkpoint comes next
    return kept, json.loads(summary.read_text())


def train_variant(spec: str, args: argparse.Namespace, train: Path, test: Path) -> dict[str, Any]:
    words, target, augment, lr, *rest = spec.split(":")
    size = next((int(r) for r in rest if r.isdigit()), args.size)
    name = spec.replace(":", "-")
    root = variant_store(args.store, train, name, words)
    init, first = top_first(root, target, args.top_epochs) if "top-first" in rest else (None, None)
    config = CNNRConfig(epochs=args.epochs, target=target, full=True, size=size, augment=augment == "augment",
                        lr=float(lr), lr_ratio=args.lr_ratio, warmup=0 if init else args.warmup,
                        patience=args.patience, batch_size=args.batch_size, restart=args.restart, init=init)
    report = train_cnnr(root, config, progress=RichProgress())
    kept = report.history[report.best_epoch - 1]
    print(f"{spec}: validation F1 {report.best_validation_f1} / N+ {kept['validation_n_plus']} at epoch "
          f"{report.best_epoch} of {len(report.history)}, {report.seconds:.0f} s", flush=True)
    return {"spec": spec, "words": words, "target": target, "augment": augment == "augment", "lr": float(lr),
            "top_first": first, "size": size, "store": str(root),
            "seconds": round(report.seconds + (first["seconds"] if first else 0), 1), "best_epoch": report.best_epoch,
            "epochs_run": len(report.history), "validation_f1": report.best_validation_f1,
            "validation_n_plus": kept["validation_n_plus"], "history": report.history}


def fine_tuned_features(args: argparse.Namespace, chosen: dict[str, Any], train: Path, test: Path) -> dict[str, Any]:
    """CCA-KNN on the chosen network's penultimate features: indexed, tuned by cross-validation, evaluated once."""
    fine_store = args.store.with_name(f"{args.store.stem}-cnnr-full-features.annot")
    shutil.rmtree(fine_store, ignore_errors=True)
    with StoreDir.open(args.store) as s:
        base = s.manifest().settings
    t = time.perf_counter()
    build_index(train, fine_store, base.replace(encoder=base.encoder.replace(name=f"cnnr:{chosen['store']}")),
                RichProgress())
    index_seconds = time.perf_counter() - t
    tuned = tune_store(fine_store, design="cover", folds=5, progress=RichProgress())
    result = evaluate(fine_store, test)
    cv_f1 = round(100 * tuned.chosen_result.f1, 2)
    print(f"cca-knn on the fine-tuned features: {result.summary.as_percent()} (CV F1 {cv_f1})", flush=True)
    return {"store": str(fine_store), "index_seconds": round(index_seconds, 1), "tune_seconds": round(tuned.seconds, 1),
            "cv_f1": cv_f1, "settings": searched(tuned.chosen), "test": result.summary.as_percent(),
            "text": base.text.words}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/corel5k"))
    parser.add_argument("--store", type=Path, default=Path("out/corel5k.annot"))
    parser.add_argument("--variants", default="minilm:whitened:augment:0.001",
                        help="words:target:augment|plain:lr, comma-separated")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--top-epochs", type=int, default=12, help="most epochs of a top-first variant's first part")
    parser.add_argument("--lr-ratio", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--restart", action="store_true")
    parser.add_argument("--skip-features", action="store_true",
                        help="train and choose only (an earlier run's features row is kept if it chose the same)")
    args = parser.parse_args()
    started = time.perf_counter()
    dataset = args.data.name
    train, test = args.data / "train.jsonl", args.data / "test.jsonl"
    if not (args.store / "manifest.json").is_file():
        build_index(train, args.store, BuildSettings(text=TextSettings(vocabulary=args.data / "vocabulary.txt")))

    variants = [train_variant(spec, args, train, test) for spec in args.variants.split(",")]
    chosen = max(variants, key=lambda v: v["validation_f1"])
    for v in variants:  # each reported once; the choice is the validation images'
        v["test"] = evaluate(Path(v["store"]), test, scoring=ScoringSettings(method="cnn-r"), record=False
                             ).summary.as_percent()
    print(f"chosen on validation images: {chosen['spec']}; test {chosen['test']}", flush=True)
    fine = None if args.skip_features else fine_tuned_features(args, chosen, train, test)
    previous = Path(__file__).parent / "results" / f"cnnr-full-{dataset}.json"
    if fine is None and previous.is_file():  # skipped: an earlier run's, where it was made on the same network
        earlier = json.loads(previous.read_text())
        fine = earlier.get("cca_knn_fine_tuned") if earlier.get("chosen") == chosen["spec"] else None

    out = {"dataset": dataset, "size": args.size, "lr_ratio": args.lr_ratio, "warmup": args.warmup,
           "batch_size": args.batch_size, "variants": variants, "chosen": chosen["spec"], "cca_knn_fine_tuned": fine,
           "this_run_seconds": round(time.perf_counter() - started, 1)}
    rows = []
    p = PUBLISHED.get(dataset, {}).get("CNN-R (CaffeNet, W2V)")
    if p:
        rows.append(f"| paper: CNN-R (CaffeNet, word2vec, whole network) | | {p[0]} | {p[1]} | {p[2]} | {p[3]} | |")
    for v in variants:
        s = v.get("test")
        mark = "**" if v is chosen else ""
        test_cells = f"{s['P']} | {s['R']} | {mark}{s['F1']}{mark} | {s['N+']}" if s else " | | | "
        rows.append(f"| {mark}CNN-R (Lite0 whole network at {v['size']} px, {WORD_NAMES.get(v['words'], v['words'])}, "
                    f"{v['target']} target, {'crops + mirror' if v['augment'] else 'no augmentation'}, lr {v['lr']:g}"
                    f"{', from the top blocks trained first' if v.get('top_first') else ''})"
                    f"{mark} | {v['validation_f1']} / {v['validation_n_plus']} (epoch {v['best_epoch']}) | "
                    f"{test_cells} | {v['seconds']:.0f} |")
    if fine:
        s = fine["test"]
        rows.append(f"| CCA-KNN on the chosen network's fine-tuned features ({WORD_NAMES.get(fine['text'], fine['text'])}, "
                    f"settings by CV, CV F1 {fine['cv_f1']}) | | {s['P']} | {s['R']} | {s['F1']} | {s['N+']} | "
                    f"{fine['index_seconds'] + fine['tune_seconds']:.0f} |")
    write_results(f"cnnr-full-{dataset}", out, ["method", "validation F1 / N+", "P", "R", "F1", "N+", "seconds"], rows)


if __name__ == "__main__":
    main()
