"""Corel-5k end to end: index the training split, choose settings by cross-validation on the training split only
(five cover hold-outs the size of the test split by default), rebuild the store with each row's chosen settings, then
evaluate each once on the 499 test images.

    python benchmarks/corel5k.py [--data ../shared/data/corel5k] [--store out/corel5k.annot] [--encoder NAME]
                                 [--words glove-50|minilm|PATH] [--projections linear,kcca,kcca-rbf] [--cv cover|random]
                                 [--test-rows NAME,...] [--suffix SUFFIX]

Writes benchmarks/results/corel5k-<encoder>[-kcca][-<words>][-cover][SUFFIX].json and .md (our rows beside the
paper's Table 1 rows). Where the dataset has no images here (ESP-Game, IAPRTC-12) it runs the label-side checks only
(labels-<dataset>.json/.md). The fitting and the cross-validation are annot's own (annot.fitting.fit, annot.fitting.cv).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from annot.cli.render import RichProgress
from annot.evaluation.evaluate import evaluate
from annot.evaluation.tune import choose, grid, searched
from annot.features.words import load_word_vectors
from annot.fitting.cv import CVResult, cross_validate
from annot.fitting.fit import load_training_set
from annot.indexer import build_index, rebuild
from annot.indexer.build import training_ids
from annot.indexer.corpus import read_corpus, read_vocabulary
from annot.metrics import per_word_metrics, predictions_matrix, summarize
from annot.model import StoreModel
from annot.settings import BuildSettings, EncoderSettings, Space, TextSettings
from annot.store import StoreDir
from common import write_results

PAPER = {  # RESULTS.md, Table 1 (VGG-16 features)
    "CCA (VGG-16, W2V)": (35, 46, 40, 172),
    "KCCA (VGG-16, W2V)": (39, 53, 45, 184),
    "CCA-KNN (VGG-16, BV)": (39, 51, 44, 192),
    "CCA-KNN (VGG-16, W2V)": (42, 52, 46, 201),
}
SPACES = list(Space)
KCCA_RIDGES = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
KCCA_GAMMAS = [1.0, 2.0, 4.0]


def linear_grid(base: BuildSettings) -> list[BuildSettings]:
    b = base.replace(projection=base.projection.replace(kind="linear-cca"))
    return (grid(b, text__view=["w2v", "bv", "w2v+bv"], projection__normalization=["none", "power"],
                 projection__reg=[0.3, 1.0], scoring__method=["cca-knn"], scoring__k=[5, 8, 16],
                 scoring__temperature=[0.05, 0.1], scoring__frequency_power=[0.0, 0.25, 0.375, 0.5, 0.625, 0.75])
            + grid(b, text__view=["w2v", "bv", "w2v+bv"], projection__normalization=["none", "power"],
                   projection__reg=[0.1, 0.3, 1.0], scoring__method=["nn"], projection__space=SPACES)
            + grid(b, text__view=["bv", "w2v+bv"], projection__normalization=["power"], projection__reg=[0.3, 1.0],
                   scoring__method=["cca-knn"], scoring__k=[8, 16], scoring__temperature=[0.05, 0.1],
                   scoring__frequency_power=[0.25, 0.375, 0.5, 0.75], scoring__depth=[500, 1000, 2000]))


def kcca_grid(base: BuildSettings, text_kernel: str = "linear") -> list[BuildSettings]:
    b = base.replace(projection=base.projection.replace(kind="kcca", text_kernel=text_kernel, normalization="power"))
    linear = base.replace(projection=base.projection.replace(kind="linear-cca", text_kernel="linear"))
    if text_kernel == "rbf":
        ridges, gammas, alphas = [0.1, 0.3, 1.0], [1.0, 2.0], [0.0, 0.25, 0.375, 0.5]
    else:
        ridges, gammas, alphas = KCCA_RIDGES, KCCA_GAMMAS, [0.0, 0.25, 0.5]
    out = (grid(b, text__view=["w2v", "w2v+bv"], projection__reg=ridges, projection__gamma_scale=gammas,
                scoring__method=["cca-knn"], scoring__k=[5, 8, 16], scoring__temperature=[0.05, 0.1],
                scoring__frequency_power=alphas)
           + grid(b, text__view=["w2v", "w2v+bv"], projection__reg=ridges, projection__gamma_scale=gammas,
                  scoring__method=["nn"], projection__space=SPACES)
           + grid(linear, text__view=["w2v", "bv", "w2v+bv"], projection__normalization=["none", "power"],
                  projection__reg=KCCA_RIDGES, scoring__method=["nn"], projection__space=SPACES))
    if text_kernel == "linear":
        out += grid(b, text__view=["w2v", "w2v+bv"], projection__reg=KCCA_RIDGES, projection__gamma_scale=KCCA_GAMMAS,
                    scoring__method=["cca-knn"], scoring__k=[8, 16, 32], scoring__temperature=[0.05, 0.1, 0.2],
                    scoring__frequency_power=[0.0], scoring__score=["standardized"])
    return out


def kcca_rows(name: str, text_kernel: str, linear_note: str) -> dict[str, dict[str, object]]:
    """A KCCA run's rows: its transfer and CCA-KNN, each on W2V and on the best text view, and linear CCA's transfer
    from the same run as their comparison."""
    k = {"kind": "kcca", "text_kernel": text_kernel}
    return {
        f"{name} + nn transfer (W2V)": {**k, "method": "nn", "view": "w2v"},
        f"{name} + nn transfer (best text view)": {**k, "method": "nn"},
        f"{name} + CCA-KNN (W2V)": {**k, "method": "cca-knn", "view": "w2v", "score": "eq5"},
        f"{name} + CCA-KNN (best text view)": {**k, "method": "cca-knn", "score": "eq5"},
        f"{name} + CCA-KNN, standardized scores (best text view)": {**k, "method": "cca-knn", "score": "standardized"},
        f"CCA + nn transfer (W2V), {linear_note}": {"kind": "linear-cca", "method": "nn", "view": "w2v"},
        f"CCA + nn transfer (best text view), {linear_note}": {"kind": "linear-cca", "method": "nn"},
    }


ROWS: dict[str, dict[str, dict[str, object]]] = {
    "linear": {
        "CCA + nn transfer (W2V)": {"kind": "linear-cca", "method": "nn", "view": "w2v"},
        "CCA + nn transfer (best text view)": {"kind": "linear-cca", "method": "nn"},
        "CCA-KNN (BV), Eq. 5 as printed (α = 0)": {"kind": "linear-cca", "method": "cca-knn", "view": "bv",
                                                    "frequency_power": 0.0},
        "CCA-KNN (W2V), Eq. 5 as printed (α = 0)": {"kind": "linear-cca", "method": "cca-knn", "view": "w2v",
                                                     "frequency_power": 0.0},
        "CCA-KNN (BV)": {"kind": "linear-cca", "method": "cca-knn", "view": "bv"},
        "CCA-KNN (W2V)": {"kind": "linear-cca", "method": "cca-knn", "view": "w2v"},
        "CCA-KNN (W2V+BV), all images as candidates": {"kind": "linear-cca", "method": "cca-knn", "view": "w2v+bv",
                                                       "depth": 0},
        "CCA-KNN (W2V+BV)": {"kind": "linear-cca", "method": "cca-knn", "view": "w2v+bv"},
    },
    "kcca": kcca_rows("KCCA", "linear", "the same ridges"),
    "kcca-rbf": kcca_rows("KCCA, Gaussian text kernel", "rbf", "same run"),
}


def value(settings: BuildSettings, key: str) -> object:
    return {"kind": settings.projection.kind, "text_kernel": settings.projection.text_kernel,
            "view": settings.text.view, "method": settings.scoring.method, "score": settings.scoring.score,
            "frequency_power": settings.scoring.frequency_power, "depth": settings.scoring.depth}[key]


def best(results: list[CVResult], **fixed: object) -> CVResult | None:
    """The highest CV F1 among the candidates with the ``fixed`` settings (None when the grid has none)."""
    matching = [r for r in results if all(value(r.candidate, k) == v for k, v in fixed.items())]
    return choose(matching) if matching else None


def cover_holdout(data: Path) -> float:
    """The size of cover hold-outs: the test split's number of images over the training file's (labels unread)."""
    n_test = sum(1 for line in (data / "test.jsonl").open() if line.strip())
    n_train = sum(1 for line in (data / "train.jsonl").open() if line.strip())
    return n_test / n_train


def label_checks(data: Path) -> dict[str, object]:
    """What can be checked without images: the corpus files parse, tag statistics, word-vector coverage, and the
    metric floor and ceiling on the test labels (the 5 most frequent training words; the true tags themselves)."""
    vocabulary = read_vocabulary(data / "vocabulary.txt")
    column = {w: i for i, w in enumerate(vocabulary)}
    out: dict[str, object] = {"dataset": data.name, "vocabulary": len(vocabulary)}
    matrices = {}
    for split in ("train", "test"):
        corpus = read_corpus(data / f"{split}.jsonl", vocabulary)
        Y = np.zeros((len(corpus.entries), len(vocabulary)), bool)
        for r, e in enumerate(corpus.entries):
            Y[r, [column[t] for t in e.tags]] = True
        matrices[split] = Y
        out[split] = {"images": len(Y), "tags_per_image": round(float(Y.sum(1).mean()), 2),
                      "untagged": int((Y.sum(1) == 0).sum()), "tags_outside_vocabulary": sum(corpus.dropped_tags.values())}
    train, test = matrices["train"], matrices["test"]
    frequency = train.sum(0)
    prior = [np.argsort(-frequency, kind="stable")[:5]] * len(test)
    truth5 = [np.flatnonzero(row)[np.argsort(-frequency[np.flatnonzero(row)], kind="stable")][:5] for row in test]
    for name, words in (("frequency prior (5 most frequent training words)", prior),
                        ("ceiling: the true tags, at most 5", truth5)):
        out[name] = summarize(per_word_metrics(test, predictions_matrix(words, len(vocabulary))), len(test)).as_percent()
    _, missing = load_word_vectors("glove-50").matrix(vocabulary)
    out["words_without_glove_50_vector"] = len(missing)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/corel5k"))
    parser.add_argument("--store", type=Path, default=Path("out/corel5k.annot"))
    parser.add_argument("--encoder", default=BuildSettings().encoder.name, help="image encoder (default: the default)")
    parser.add_argument("--folds", type=int, default=5, help="folds (random) or hold-outs (cover)")
    parser.add_argument("--cv", choices=["cover", "random"], default="cover",
                        help="cover: hold-outs the size of the test split holding every word (annot.fitting.splits); "
                             "random: plain k-fold")
    parser.add_argument("--projections", default="linear", help="comma-separated: linear, kcca, kcca-rbf")
    parser.add_argument("--words", default="glove-50", help="word vectors: glove-50, minilm or a file")
    parser.add_argument("--test-rows", default="", help="evaluate on test only the rows whose name holds one of these "
                        "comma-separated strings (the others get their CV numbers only); default: every row")
    parser.add_argument("--suffix", default="", help="appended to the results' file names")
    args = parser.parse_args()
    t0 = time.perf_counter()
    if not (args.data / "images").is_dir():
        print(f"{args.data / 'images'}: no images; running the label-side checks only", flush=True)
        checks = label_checks(args.data)
        write_results(f"labels-{args.data.name}", checks, ["check", "value"],
                      [f"| {k} | {json.dumps(v) if isinstance(v, dict) else v} |" for k, v in checks.items()])
        return

    base = BuildSettings(encoder=EncoderSettings(args.encoder),
                         text=TextSettings(words=args.words, vocabulary=args.data / "vocabulary.txt"))
    index_report = build_index(args.data / "train.jsonl", args.store, base, RichProgress())
    print(f"indexed {index_report.n_indexed} images; stage seconds {index_report.seconds}", flush=True)
    with StoreDir.open(args.store) as store:
        model = StoreModel(store)
        base = model.settings
        training = load_training_set(store, model.feature_cache(), training_ids(store), tuple(model.vocabulary),
                                     tuple(model.tag_ids), load_word_vectors(model.manifest.words.source))
    projections = args.projections.split(",")
    grids = {"linear": linear_grid, "kcca": kcca_grid, "kcca-rbf": lambda b: kcca_grid(b, "rbf")}
    candidates = list(dict.fromkeys(c for name in projections for c in grids[name](base)))
    holdout = cover_holdout(args.data)
    t = time.perf_counter()
    results = cross_validate(training.X, training.labels, training.E, training.has_vector, candidates,
                             folds=args.folds, design=args.cv, holdout=holdout, progress=RichProgress())
    cv_seconds = time.perf_counter() - t
    print(f"cross-validated {len(candidates)} candidates in {cv_seconds:.0f}s", flush=True)
    rows = {label: row for name in projections for label, fixed in ROWS[name].items()
            if (row := best(results, **fixed)) is not None}
    wanted = [w for w in args.test_rows.split(",") if w]
    out: dict[str, Any] = {"encoder": args.encoder, "words": args.words, "folds": args.folds, "cv": args.cv,
                           **({"holdout": round(holdout, 4)} if args.cv == "cover" else {}),
                           "grid_size": len(candidates), "cv_seconds": round(cv_seconds, 1),
                           "index_seconds": index_report.seconds, "rows": {}}
    for name, r in rows.items():
        entry: dict[str, Any] = {"settings": searched(r.candidate), "cv_f1": round(100 * r.f1, 2),
                                 "cv_n_plus": round(r.n_plus, 1), "test": None}
        out["rows"][name] = entry
        note = f"(CV F1 {100 * r.f1:.2f}, N+ {r.n_plus:.1f})"
        if wanted and not any(w in name for w in wanted):
            print(f"{name}: not evaluated on test {note}", flush=True)
            continue
        rebuild(args.store, r.candidate)
        result = evaluate(args.store, args.data / "test.jsonl")
        entry.update(test=result.summary.as_percent(), run_id=result.run_id)
        print(f"{name}: test {result.summary.as_percent()} {note}", flush=True)
    rebuild(args.store, results[0].candidate)  # the store keeps the cross-validated best settings
    out["chosen"] = searched(results[0].candidate)
    out["total_seconds"] = round(time.perf_counter() - t0, 1)
    suffix = ("" if projections == ["linear"] else "-" + "-".join(projections))
    suffix += ("" if args.words == "glove-50" else "-" + Path(args.words).stem)
    suffix += ("-cover" if args.cv == "cover" else "") + args.suffix
    lines = [f"| paper: {name} | VGG-16 | | {p} | {r} | {f} | {n} | | |" for name, (p, r, f, n) in PAPER.items()]
    for name, row in out["rows"].items():
        s = row["test"] or {"P": "", "R": "", "F1": "", "N+": ""}
        lines.append(f"| annot: {name} | {args.encoder} | {Path(args.words).stem} | {s['P']} | {s['R']} | {s['F1']} "
                     f"| {s['N+']} | {row['cv_f1']} | {row['cv_n_plus']} |")
    write_results(f"corel5k-{args.encoder}{suffix}", out,
                  ["method", "visual", "text", "P", "R", "F1", "N+", "CV F1", "CV N+"], lines)


if __name__ == "__main__":
    main()
