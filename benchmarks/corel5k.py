"""Corel-5k end to end: index the training split, choose hyperparameters by cross-validation on the training split
only (five cover hold-outs the size of the test split by default), rebuild the store with each row's chosen settings,
then evaluate each once on the 499 test images.

    python benchmarks/corel5k.py [--data ../shared/data/corel5k] [--store out/corel5k.annot] [--encoder NAME]
                                 [--words glove-50|minilm|PATH] [--projections linear,kcca,kcca-rbf] [--flip] [--crops] [--cv cover|random]
                                 [--test-rows NAME,...] [--suffix SUFFIX]

Writes benchmarks/results/corel5k-<encoder>[-kcca][-crops][-flip][-<words>][-cover][SUFFIX].json and .md (our rows
beside the paper's Table 1 rows), and every candidate's CV numbers to the same name with -cv.jsonl.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from annot.cli.render import RichProgress
from annot.evaluation.evaluate import evaluate
from annot.evaluation.tune import Candidate, choose, choose_for_targets, cross_validate, grid, target_odds
from annot.features.words import load_word_vectors
from annot.indexer import IndexConfig, build_index
from annot.indexer.build import load_training_set
from annot.indexer.features import FeatureCache
from annot.projection.registry import SPACES
from annot.store import Store
from assemble import assemble

PAPER = {  # RESULTS.md, Table 1 (VGG-16 features)
    "CCA (VGG-16, W2V)": (35, 46, 40, 172),
    "KCCA (VGG-16, W2V)": (39, 53, 45, 184),
    "CCA-KNN (VGG-16, BV)": (39, 51, 44, 192),
    "CCA-KNN (VGG-16, W2V)": (42, 52, 46, 201),
}

LINEAR_GRID = (
    # τ = 0.2 was in this grid until the cover hold-outs and never won (5-15 points behind); α has finer steps
    grid(text=["w2v", "bv", "w2v+bv"], normalization=["none", "power"], reg=[0.3, 1.0],
         k=[5, 8, 16], temperature=[0.05, 0.1], frequency_power=[0.0, 0.25, 0.375, 0.5, 0.625, 0.75])
    # transfer compares a query with the training images' U, their tags' V (the paper's wording) or both (session 6)
    + grid(text=["w2v", "bv", "w2v+bv"], normalization=["none", "power"], reg=[0.1, 0.3, 1.0], method=["nn"],
           space=SPACES)
    # the candidate pool: each query's `depth` nearest training images only (the other grids look at all of them)
    + grid(text=["bv", "w2v+bv"], normalization=["power"], reg=[0.3, 1.0], k=[8, 16], temperature=[0.05, 0.1],
           frequency_power=[0.25, 0.375, 0.5, 0.75], depth=[500, 1000, 2000])
    # per-tag K: K_w = K (n_w / median n)^β
    + grid(text=["bv", "w2v+bv"], normalization=["power"], reg=[0.3, 1.0], k=[8, 16, 24], temperature=[0.05, 0.1],
           frequency_power=[0.25, 0.375, 0.5, 0.75], k_power=[0.25, 0.5])
)
# ridge 0.01 and γ × 4 added in session 6: ridge 0.03 and γ × 2, the old edges, were chosen on Lite2 with stages
KCCA_RIDGES = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
KCCA_GAMMAS = [1.0, 2.0, 4.0]
KCCA_GRID = (
    grid(projection=["kcca"], text=["w2v", "w2v+bv"], normalization=["power"], reg=KCCA_RIDGES, gamma_scale=KCCA_GAMMAS,
         k=[5, 8, 16], temperature=[0.05, 0.1], frequency_power=[0.0, 0.25, 0.5])
    + grid(projection=["kcca"], text=["w2v", "w2v+bv"], normalization=["power"], reg=KCCA_RIDGES, gamma_scale=KCCA_GAMMAS,
           method=["nn"], space=SPACES)
    # linear CCA's transfer over the same ridges, so the two projections are compared on one grid in one run
    + grid(text=["w2v", "bv", "w2v+bv"], normalization=["none", "power"], reg=KCCA_RIDGES, method=["nn"], space=SPACES)
    # standardised CCA-KNN (session 10): each word's Eq. 5 score against its leave-one-out scores on the fitting
    # images; K and τ as the frontier benchmark's candidates (α 0: the standardisation is the frequency correction)
    + grid(projection=["kcca"], text=["w2v", "w2v+bv"], normalization=["power"], reg=KCCA_RIDGES, gamma_scale=KCCA_GAMMAS,
           k=[8, 16, 32], temperature=[0.05, 0.1, 0.2], score=["standardized"])
)
# the target, F1 ≥ 46 and N+ ≥ 201: a row chosen for both by a rule on CV results only, fixed in session 10
# before the first run with it (choose: the most CV N+ among candidates with CV F1 ≥ 46)
TARGET_F1 = 0.46
# session 12, fixed before the run it was first used in: that rule takes the most CV N+ at the F1 floor, so its picks
# sit on the floor and land below it on test about half the time before any winner's curse. The second rule keeps a
# margin on both sides: the candidate most likely to meet both on a new hold-out (annot.evaluation.tune.target_odds)
TARGET_N_PLUS = 201
# KCCA with a Gaussian kernel on the text view as well (--projections kcca-rbf). Each fit solves a CCA between two
# views of a few thousand mapped dimensions, so its grid is narrower: the ridges and widths around the linear-text
# KCCA choices, and γ_y at its default (a two-hold-out probe put γ_y × 0.5 and × 2 within 0.1 CV F1 of each other).
RBF_RIDGES = [0.1, 0.3, 1.0]
KCCA_RBF_GRID = (
    grid(projection=["kcca"], text_kernel=["rbf"], text=["w2v", "w2v+bv"], normalization=["power"], reg=RBF_RIDGES,
         gamma_scale=[1.0, 2.0], k=[5, 8, 16], temperature=[0.05, 0.1], frequency_power=[0.0, 0.25, 0.375, 0.5])
    + grid(projection=["kcca"], text_kernel=["rbf"], text=["w2v", "w2v+bv"], normalization=["power"], reg=RBF_RIDGES,
           gamma_scale=[1.0, 2.0], method=["nn"], space=SPACES)
    + grid(text=["w2v", "bv", "w2v+bv"], normalization=["none", "power"], reg=KCCA_RIDGES, method=["nn"], space=SPACES)
)
def kcca_rows(name: str, text_kernel: str, linear_note: str) -> dict[str, dict[str, object]]:
    """A KCCA run's rows: its transfer and CCA-KNN, each on W2V and on the best text view, and linear CCA's transfer
    from the same run as their comparison."""
    return {
        f"{name} + nn transfer (W2V)": {"method": "nn", "text": "w2v", "text_kernel": text_kernel},
        f"{name} + nn transfer (best text view)": {"method": "nn", "text_kernel": text_kernel},
        f"{name} + CCA-KNN (W2V)": {"method": "cca-knn", "text": "w2v", "text_kernel": text_kernel, "score": "eq5"},
        f"{name} + CCA-KNN (best text view)": {"method": "cca-knn", "text_kernel": text_kernel, "score": "eq5"},
        f"{name} + CCA-KNN, standardized scores (best text view)": {"method": "cca-knn", "text_kernel": text_kernel,
                                                                    "score": "standardized"},
        f"{name} + CCA-KNN, the most CV N+ at CV F1 ≥ 46 (the rule for the target)": {
            "method": "cca-knn", "text_kernel": text_kernel, "min_f1": TARGET_F1},
        f"{name} + CCA-KNN, the likeliest to reach F1 46 and N+ 201 (the second rule for the target)": {
            "method": "cca-knn", "text_kernel": text_kernel, "targets": (TARGET_F1, TARGET_N_PLUS)},
        f"CCA + nn transfer (W2V), {linear_note}": {"method": "nn", "text": "w2v", "projection": "linear-cca"},
        f"CCA + nn transfer (best text view), {linear_note}": {"method": "nn", "projection": "linear-cca"},
    }


ROWS = {
    "linear": {
        "CCA + nn transfer (W2V)": {"method": "nn", "text": "w2v"},
        "CCA + nn transfer (best text view)": {"method": "nn"},
        "CCA-KNN (BV), Eq. 5 as printed (α = 0)": {"method": "cca-knn", "text": "bv", "frequency_power": 0.0},
        "CCA-KNN (W2V), Eq. 5 as printed (α = 0)": {"method": "cca-knn", "text": "w2v", "frequency_power": 0.0},
        "CCA-KNN (BV)": {"method": "cca-knn", "text": "bv"},
        "CCA-KNN (W2V)": {"method": "cca-knn", "text": "w2v"},
        "CCA-KNN (W2V+BV), all images as candidates": {"method": "cca-knn", "text": "w2v+bv", "depth": 0},
        "CCA-KNN (W2V+BV)": {"method": "cca-knn", "text": "w2v+bv"},
    },
    "kcca": kcca_rows("KCCA", "linear", "the same ridges"),
    "kcca-rbf": kcca_rows("KCCA, Gaussian text kernel", "rbf", "same run"),
}


def cover_holdout(data: Path) -> float:
    """The size of cover hold-outs: the test split's number of images over the training file's (labels unread), so
    each hold-out is the size of the test split."""
    n_test = sum(1 for line in (data / "test.jsonl").open() if line.strip())
    n_train = sum(1 for line in (data / "train.jsonl").open() if line.strip())
    return n_test / n_train


def best(results: list, min_f1: float | None = None, targets: tuple[float, float] | None = None,  # type: ignore[no-untyped-def]
         **fixed: object):
    """The chosen candidate among those with the ``fixed`` settings (``choose``, or ``choose_for_targets`` with
    ``targets``); a row without any gets none."""
    matching = [r for r in results if all(getattr(r.candidate, k) == v for k, v in fixed.items())]
    if not matching:
        return None
    return choose_for_targets(matching, *targets) if targets else choose(matching, min_f1)


def config_of(c: Candidate, encoder: str, vocabulary: Path, flip: bool = False, words: str = "glove-50", crops: bool = False) -> IndexConfig:
    return IndexConfig(encoder=encoder, flip=flip, crops=crops, words=words, text=c.text, normalization=c.normalization, reg_x=c.reg, reg_y=c.reg, space=c.space,
                       n_components=c.n_components, method=c.method, k=c.k, temperature=c.temperature,
                       frequency_power=c.frequency_power, projection=c.projection, landmarks="auto", gamma_scale=c.gamma_scale, depth=c.depth, k_power=c.k_power,
                       text_kernel=c.text_kernel, score=c.score, vocabulary=vocabulary)


def label_checks(data: Path) -> dict[str, object]:
    """What can be checked without images: the corpus files parse, tag statistics, word-vector coverage, and the
    metric floor and ceiling on the test labels (the 5 most frequent training words; the true tags themselves)."""
    import numpy as np

    from annot.evaluation.metrics import per_word_metrics, predictions_matrix, summarize
    from annot.features.words import load_word_vectors
    from annot.indexer.corpus import read_corpus, read_vocabulary

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
    for name, words in (("frequency prior (5 most frequent training words)", prior), ("ceiling: the true tags, at most 5", truth5)):
        out[name] = summarize(per_word_metrics(test, predictions_matrix(words, len(vocabulary))), len(test)).as_percent()
    _, missing = load_word_vectors("glove-50").matrix(vocabulary)
    out["words_without_glove_50_vector"] = len(missing)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/corel5k"))
    parser.add_argument("--store", type=Path, default=Path("out/corel5k.annot"))
    parser.add_argument("--encoder", default=IndexConfig.encoder, help="image encoder (default: the store default)")
    parser.add_argument("--folds", type=int, default=5, help="folds (random) or hold-outs (cover)")
    parser.add_argument("--cv", choices=["cover", "random"], default="cover",
                        help="cover: hold-outs the size of the test split holding every word, as the test split does "
                             "(annot.evaluation.splits); random: plain k-fold (the design of runs before cover)")
    parser.add_argument("--flip", action="store_true", help="average features over each image and its mirror")
    parser.add_argument("--crops", action="store_true", help="average features over each image and five crops of it")
    parser.add_argument("--projections", default="linear", help="comma-separated: linear, kcca, kcca-rbf (KCCA with a "
                        "Gaussian text kernel)")
    parser.add_argument("--words", default="glove-50", help="word vectors: glove-50, minilm or a file")
    parser.add_argument("--test-rows", default="", help="evaluate on test only the rows whose name holds one of these "
                        "comma-separated strings (the others get their CV numbers only); default: every row")
    parser.add_argument("--suffix", default="", help="appended to the results' file names (a rerun beside an earlier one)")
    args = parser.parse_args()
    vocabulary = args.data / "vocabulary.txt"
    t0 = time.perf_counter()
    results_dir = Path(__file__).parent / "results"
    if not (args.data / "images").is_dir():
        print(f"{args.data / 'images'}: no images; running the label-side checks only", flush=True)
        checks = label_checks(args.data)
        results_dir.mkdir(exist_ok=True)
        (results_dir / f"labels-{args.data.name}.json").write_text(json.dumps(checks, indent=2))
        rows = [[k, json.dumps(v) if isinstance(v, dict) else v] for k, v in checks.items()]
        (results_dir / f"labels-{args.data.name}.md").write_text(
            "| check | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n")
        print(json.dumps(checks, indent=2))
        assemble()
        return

    index_report = build_index(args.data / "train.jsonl", args.store, IndexConfig(encoder=args.encoder, flip=args.flip, crops=args.crops, words=args.words,
                                                                                vocabulary=vocabulary), RichProgress())
    print(f"indexed {index_report.n_indexed} images; stage seconds {index_report.seconds}", flush=True)

    with Store.open(args.store) as store:
        manifest = store.manifest()
        cache = FeatureCache(store.features_dir / manifest["encoder"]["key"], manifest["encoder"]["dim"])
        words = load_word_vectors(manifest["words"]["source"])
        training = load_training_set(store, cache, tuple(manifest["vocabulary"]["words"]), words, "bv")
    t = time.perf_counter()
    projections = args.projections.split(",")
    GRID = [c for name in projections for c in {"linear": LINEAR_GRID, "kcca": KCCA_GRID, "kcca-rbf": KCCA_RBF_GRID}[name]]
    holdout = cover_holdout(args.data)
    results = cross_validate(training.X, training.labels, training.E, training.has_vector, GRID, folds=args.folds,
                             design=args.cv, holdout=holdout, progress=RichProgress())
    cv_seconds = time.perf_counter() - t
    print(f"cross-validated {len(GRID)} candidates in {cv_seconds:.0f}s", flush=True)
    for r in results[:5]:
        print(f"  CV F1 {100 * r.f1:.2f} N+ {r.n_plus:.1f}  {r.candidate}", flush=True)
    suffix = ("" if projections == ["linear"] else "-" + "-".join(projections)) + ("-crops" if args.crops else "") + ("-flip" if args.flip else "")
    suffix += "" if args.words == "glove-50" else "-" + Path(args.words).stem
    suffix += ("-cover" if args.cv == "cover" else "") + args.suffix
    results_dir.mkdir(exist_ok=True)
    # every candidate's CV numbers, so that a rule can be read off them later without another CV run
    odds = target_odds(results, TARGET_F1, TARGET_N_PLUS)
    (results_dir / f"corel5k-{args.encoder}{suffix}-cv.jsonl").write_text("".join(
        json.dumps({"settings": dataclasses.asdict(r.candidate), "f1": round(r.f1, 5), "n_plus": r.n_plus,
                    "fold_f1": [round(v, 5) for v in r.fold_f1], "fold_n_plus": r.fold_n_plus,
                    "target_odds": round(p, 4)}, separators=(",", ":")) + "\n"
        for r, p in zip(results, odds, strict=True)))

    rows = {}
    for name in projections:
        kind = "linear-cca" if name == "linear" else "kcca"
        for label, fixed in ROWS[name].items():
            row = best(results, **{"projection": kind, **fixed})
            if row is not None:  # a grid without the row's settings (e.g. standardized scores for kcca-rbf)
                rows[label] = row
    wanted = [w for w in args.test_rows.split(",") if w]
    chosen = results[0].candidate
    out: dict[str, object] = {"encoder": args.encoder, "flip": args.flip, "crops": args.crops, "words": args.words, "folds": args.folds,
                              "cv": args.cv, **({"holdout": round(holdout, 4)} if args.cv == "cover" else {}),
                              "grid_size": len(GRID), "cv_seconds": round(cv_seconds, 1),
                              "index_seconds": index_report.seconds, "rows": {}}
    for name, r in rows.items():
        entry: dict[str, object] = {"settings": dataclasses.asdict(r.candidate), "cv_f1": round(100 * r.f1, 2),
                                    "cv_n_plus": round(r.n_plus, 1), "test": None}
        out["rows"][name] = entry  # type: ignore[index]
        cv_note = f"(CV F1 {100 * r.f1:.2f}, N+ {r.n_plus:.1f})"
        if wanted and not any(w in name for w in wanted):
            print(f"{name}: not evaluated on test {cv_note}", flush=True)
            continue
        build_index(args.data / "train.jsonl", args.store, config_of(r.candidate, args.encoder, vocabulary, args.flip, args.words, args.crops))
        result = evaluate(args.store, args.data / "test.jsonl")
        entry.update(test=result.summary.as_percent(), run_id=result.run_id)
        print(f"{name}: test {result.summary.as_percent()} {cv_note}", flush=True)
    # leave the store with the cross-validated best settings
    build_index(args.data / "train.jsonl", args.store, config_of(chosen, args.encoder, vocabulary, args.flip, args.words, args.crops))
    out["chosen"] = dataclasses.asdict(chosen)
    out["total_seconds"] = round(time.perf_counter() - t0, 1)

    (results_dir / f"corel5k-{args.encoder}{suffix}.json").write_text(json.dumps(out, indent=2))
    lines = ["| method | visual | text | P | R | F1 | N+ | CV F1 | CV N+ |", "|---|---|---|---|---|---|---|---|---|"]
    for name, (p, r, f, n) in PAPER.items():
        lines.append(f"| paper: {name} | VGG-16 | | {p} | {r} | {f} | {n} | | |")
    for name, row in out["rows"].items():  # type: ignore[attr-defined]
        s = row["test"] or {"P": "", "R": "", "F1": "", "N+": ""}
        lines.append(f"| annot: {name} | {args.encoder} | {Path(args.words).stem} | {s['P']} | {s['R']} | {s['F1']} | {s['N+']} | {row['cv_f1']} | {row['cv_n_plus']} |")
    (results_dir / f"corel5k-{args.encoder}{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    assemble()  # the raw tables into BENCHMARKS.md


if __name__ == "__main__":
    main()
