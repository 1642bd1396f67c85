"""Combining encoders after the projection (late fusion) against before it (concatenated features): a probe.

    python benchmarks/fusion.py --store out/corel5k-triple-minilm-kcca.annot [--members a,b] [--no-concatenated]

Issue #3 lists "combining encoders" as a lever. Until now the project combined encoders one way: their features side
by side (``--encoder a+b``), one KCCA over the concatenation. With the χ² kernel that multiplies the encoders'
kernels, so two images are near only when they are near under every encoder. Late fusion fits one KCCA per encoder,
scores each query's words with Eq. 5 in each shared space, and averages the scores, so a word supported in any space
counts. This script measures both on the same features, hold-outs and scoring grid, side by side.

The store must hold the encoders' features side by side (its encoder ``a+b+...``); each member is a slice of them.
The projection settings are fixed for every member (``--ridge``, ``--gamma-scale``, ``--text``; power
normalisation, exact KCCA): those of the project's best row (Lite2 with stages, MiniLM, KCCA), chosen by its cover
cross-validation. Each member is fitted on each of the five cover hold-outs' fitting parts (``benchmarks/corel5k.py``'s)
and on all training images as ``annot tune`` fits KCCA: one χ² kernel over all training images (its width from them),
sliced per part, so a candidate here scores as the same candidate in ``benchmarks/corel5k.py``'s CV. Fitted
projections are kept under ``--cache`` with a hash of the rows they were fitted on; a rerun only scores (and fits
again a part whose rows differ: the cover hold-outs depend on the vocabulary's order). Every candidate is scored on
the five hold-outs and on the test split from the same distances; the table reports each family's cross-validated
choices (the test split chooses nothing) with their test numbers, for the record. ``--no-concatenated`` leaves out the KCCA on the features
side by side, the costliest fit; ``benchmarks/corel5k.py`` on a store of those encoders gives its CV.

A fusion's score is the mean over members of each member's query-normalised score (Eq. 5 over the query's largest;
for ``standardized``, the members' z-scores), then divided by n_w^α as in Eq. 5.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from annot.cli.render import RichProgress
from annot.evaluation.metrics import per_word_metrics, predictions_matrix, summarize
from annot.evaluation.splits import cv_splits
from annot.evaluation.tune import Candidate, CVResult, target_odds
from annot.features.encoders import build_encoder
from annot.features.text import normalize_features, text_view, usable_rows
from annot.projection.kcca import KernelCCA, chi2_input, chi2_kernel, default_gamma, kernel_map
from annot.retrieval.indexes import correlation_rows
from annot.retrieval.scoring import cca_knn_scores, standardize, top_words, word_standards
from assemble import write_results
from corel5k import cover_holdout
from frontier import load_store

TARGET_F1, TARGET_N_PLUS = 46.0, 201
KS, TAUS, ALPHAS = [8, 16, 32], [0.05, 0.1, 0.2], [0.0, 0.25, 0.375, 0.5, 0.625, 0.75]


class Member:
    """One encoder slice's projection, fitted on each hold-out's fitting part and on all training images: per part
    the query distances ``D`` and the fitting images' distances among themselves ``F`` (diagonal inf)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.D: list[NDArray[np.float32]] = []
        self.F: list[NDArray[np.float32]] = []
        self._cache: dict[tuple[str, int, int, float], tuple[NDArray[np.float64], NDArray[np.bool_]]] = {}

    def scores(self, part: int, labels: NDArray[np.bool_], k: int, tau: float, kind: str
               ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Query-normalised Eq. 5 scores (``eq5``) or their per-word standardisation (``standardized``; for every
        word, a zero score's z too, since a word no neighbour carries here may be carried in another space), and which
        words score above zero."""
        key = (kind, part, k, tau)
        if key not in self._cache:
            s = cca_knn_scores(self.D[part], labels, k, tau)[0]
            normalised = s / np.maximum(s.max(axis=1, keepdims=True), 1e-300)
            if kind == "eq5":
                self._cache[key] = normalised, s > 0
            else:
                mean, spread = word_standards(cca_knn_scores(self.F[part], labels, k, tau)[0])
                z = (normalised - mean) / spread
                assert np.array_equal(np.where(s > 0, z, -np.inf), standardize(s, (mean, spread)))  # annot's scores
                self._cache[key] = z, s > 0
        return self._cache[key]


def load(store_root: Path, data: Path) -> dict[str, Any]:
    """The store's training and test features, tags, MiniLM/GloVe word vectors and encoder slices."""
    manifest, training, test_X, test_labels = load_store(store_root, data)
    names = manifest["encoder"]["name"].split("+")
    dims = [build_encoder(n).dim for n in names]
    if sum(dims) != training.X.shape[1]:
        raise SystemExit(f"{store_root}: features are {training.X.shape[1]}-d, the encoders {names} give {sum(dims)}")
    bounds = np.cumsum([0, *dims])
    return {"training": training, "test_X": test_X, "test_labels": test_labels,
            "slices": {n: slice(int(a), int(b)) for n, a, b in zip(names, bounds[:-1], bounds[1:], strict=True)}}


def cached_fit(saved: Path, rows: str) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    """An earlier run's projections (U, T) of a part, if it saved them for the same rows (files saved before the rows
    were recorded are trusted)."""
    if not saved.is_file():
        return None
    with np.load(saved) as arrays:
        if "rows" in arrays and str(arrays["rows"]) != rows:
            print(f"{saved}: fitted on other hold-out rows (another vocabulary order?); fitting again")
            return None
        return arrays["U"], arrays["T"]


def fit_members(loaded: dict[str, Any], members: dict[str, list[str]], data: Path, args: argparse.Namespace,
                progress: RichProgress) -> tuple[dict[str, Member], list[NDArray[np.bool_]], list[NDArray[np.bool_]]]:
    """Each member fitted per cover hold-out and on all training images; the fitting parts' and queries' tags."""
    training = loaded["training"]
    X, L = normalize_features(training.X, "power"), training.labels
    Xt = normalize_features(loaded["test_X"], "power")
    splits = [*cv_splits(L, 5, "cover", cover_holdout(data), 0), (None, np.arange(len(X)))]
    keeps = [fit[usable_rows(L[fit], training.has_vector, args.text)] for _held, fit in splits]
    fitted = {name: Member(name) for name in members}
    with progress.task(f"fitting {len(members)} members' KCCA on 6 parts", len(members) * len(splits)) as advance:
        for name, parts in members.items():
            columns = np.concatenate([np.arange(len(X.T))[loaded["slices"][p]] for p in parts])
            kernels: tuple[NDArray[np.float64], float, NDArray[np.float64], NDArray[np.float64]] | None = None
            for part, ((held, _fit), keep) in enumerate(zip(splits, keeps, strict=True)):
                saved = args.cache / args.store.stem / f"{name}-ridge{args.ridge:g}-gamma{args.gamma_scale:g}-{args.text}-{part}.npz"
                rows = hashlib.sha256(keep.tobytes() + (b"" if held is None else held.tobytes())).hexdigest()[:16]
                if (cached := cached_fit(saved, rows)) is not None:
                    U, T = cached
                else:  # as cross_validate: one χ² kernel over all training images (γ from them), sliced per part
                    if kernels is None:
                        Xk = chi2_input(X[:, columns], "split")
                        gamma = default_gamma(Xk) * args.gamma_scale
                        kernels = Xk, gamma, chi2_kernel(Xk, Xk, gamma), chi2_kernel(chi2_input(Xt[:, columns], "split"), Xk, gamma)
                    Xk, gamma, K, K_test = kernels
                    eigen = kernel_map(K[np.ix_(keep, keep)])
                    model = KernelCCA(None, args.ridge, args.ridge, n_landmarks=None, negative="split")
                    model.fit_exact(Xk[keep], gamma, eigen, text_view(L[keep], training.E, training.has_vector, args.text))
                    U = correlation_rows(model.cca_.transform(model.map_ * model.eigenvalues_))
                    Q = K_test[:, keep] if held is None else K[np.ix_(held, keep)]
                    T = correlation_rows(model.cca_.transform(Q @ eigen[1]))
                    saved.parent.mkdir(parents=True, exist_ok=True)
                    np.savez(saved.with_suffix(".tmp.npz"), U=U, T=T, rows=rows)
                    saved.with_suffix(".tmp.npz").replace(saved)
                F = (1.0 - U @ U.T).astype(np.float32)
                np.fill_diagonal(F, np.inf)
                fitted[name].D.append((1.0 - T @ U.T).astype(np.float32))
                fitted[name].F.append(F)
                advance(1)
    queries = [loaded["test_labels"] if held is None else L[held] for held, _fit in splits]
    return fitted, [L[keep] for keep in keeps], queries


def quality(S: NDArray[np.float64], truth: NDArray[np.bool_], frequency: NDArray[np.int64], floor: float) -> tuple[float, int]:
    predicted = [top_words(row, frequency, 5, floor) for row in S]
    s = summarize(per_word_metrics(truth, predictions_matrix(predicted, truth.shape[1])), len(truth))
    return 100 * s.f1, s.n_plus


def sweep(fitted: dict[str, Member], families: dict[str, list[str]], labels: list[NDArray[np.bool_]],
          queries: list[NDArray[np.bool_]], progress: RichProgress) -> list[dict[str, Any]]:
    """Every family's candidates: per-hold-out F1 / N+ and the test split's."""
    grid = [("eq5", k, tau, a) for k, tau, a in itertools.product(KS, TAUS, ALPHAS)]
    grid += [("standardized", k, tau, 0.0) for k, tau in itertools.product(KS, TAUS)]
    rows = []
    with progress.task("scoring candidates on 5 hold-outs and the test split", len(families) * len(grid)) as advance:
        for family, names in families.items():
            for kind, k, tau, a in grid:
                q = []
                for part, (fit_labels, truth) in enumerate(zip(labels, queries, strict=True)):
                    frequency = fit_labels.sum(axis=0).astype(np.int64)
                    values, scored = zip(*(fitted[n].scores(part, fit_labels, k, tau, kind) for n in names), strict=True)
                    S = np.mean(values, axis=0)  # the members' mean; a word no member scores is never predicted
                    S = np.where(np.any(scored, axis=0), S, -np.inf)
                    if kind == "eq5":
                        S = S / np.maximum(frequency, 1) ** a
                    q.append(quality(S, truth, frequency, -np.inf if kind == "standardized" else 0.0))
                f = np.array(q)
                rows.append({"family": family, "score": kind, "k": k, "tau": tau, "alpha": a,
                             "fold_f1": [round(float(v), 3) for v in f[:-1, 0]],
                             "fold_n_plus": [int(v) for v in f[:-1, 1]],
                             "cv_f1": round(float(f[:-1, 0].mean()), 2), "cv_n_plus": round(float(f[:-1, 1].mean()), 1),
                             "test_f1": round(float(f[-1, 0]), 2), "test_n_plus": int(f[-1, 1])})
                advance(1)
    return rows


def with_odds(rows: list[dict[str, Any]]) -> None:
    """Each row's ``annot.evaluation.tune.target_odds`` (the fold spreads pooled over all of this run's candidates,
    every family)."""
    results = [CVResult(Candidate(), r["cv_f1"], 0.0, 0.0, r["cv_n_plus"], tuple(r["fold_f1"]), tuple(r["fold_n_plus"]))
               for r in rows]
    for r, odds in zip(rows, target_odds(results, TARGET_F1, TARGET_N_PLUS), strict=True):
        r["odds"] = round(odds, 3)


def describe(r: dict[str, Any]) -> str:
    alpha = f", α {r['alpha']:g}" if r["score"] == "eq5" else ""
    return f"{r['score']}, K {r['k']}, τ {r['tau']:g}{alpha}"


def choices(name: str, rows: list[dict[str, Any]], second: str = "likeliest to reach both (second rule)") -> list[str]:
    """Table lines headed ``name`` for two choices among ``rows``: the highest CV F1, and the second rule for the
    target (the likeliest to reach both; ties to the higher CV F1), each with its test numbers."""
    return [f"| {name} | {label} | {describe(r)} | {r['cv_f1']} | {r['cv_n_plus']} | {r['odds']} | {r['test_f1']} | "
            f"{r['test_n_plus']} |"
            for label, r in (("highest CV F1", max(rows, key=lambda r: r["cv_f1"])),
                             (second, max(rows, key=lambda r: (r["odds"], r["cv_f1"]))))]


def table(data: dict[str, Any]) -> list[str]:
    """Per family: the highest CV F1, and the second rule for the target, each with its test numbers."""
    return [line for family in data["families"]
            for line in choices(family, [r for r in data["candidates"] if r["family"] == family])]


HEAD = ["features", "rule (CV only)", "settings", "CV F1", "CV N+", "estimated chance", "test F1", "test N+"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/corel5k"))
    parser.add_argument("--store", type=Path, default=Path("out/corel5k-triple-minilm-kcca.annot"),
                        help="a store whose encoder is several joined by +; its cached features are sliced")
    parser.add_argument("--members", default="efficientnet-lite0-stages,efficientnet-lite2-stages",
                        help="comma-separated encoders of the store to fit alone, fused and concatenated")
    parser.add_argument("--ridge", type=float, default=0.03)
    parser.add_argument("--gamma-scale", type=float, default=1.0)
    parser.add_argument("--text", default="w2v+bv")
    parser.add_argument("--name", default="fusion-corel5k")
    parser.add_argument("--cache", type=Path, default=Path("out/fusion-cache"),
                        help="where each member's fitted projections are kept, so a rerun only scores")
    parser.add_argument("--no-concatenated", dest="concatenated", action="store_false",
                        help="leave out the KCCA on the members' features side by side (its χ² kernel is the costliest "
                             "step; benchmarks/corel5k.py on a store of those encoders gives its CV)")
    parser.add_argument("--table-only", action="store_true", help="rewrite the table from the results JSON")
    args = parser.parse_args()
    if args.table_only:
        data = json.loads((Path(__file__).parent / "results" / f"{args.name}.json").read_text())
        write_results(args.name, data, HEAD, table(data))
        return
    start = time.perf_counter()
    progress = RichProgress()
    loaded = load(args.store, args.data)
    singles = args.members.split(",")
    unknown = [m for m in singles if m not in loaded["slices"]]
    if unknown:
        raise SystemExit(f"{args.store}: its encoder has no {', '.join(unknown)} (it has {', '.join(loaded['slices'])})")
    joined = "+".join(singles)
    members = {m: [m] for m in singles} | ({joined: singles} if args.concatenated else {})
    fitted, labels, queries = fit_members(loaded, members, args.data, args, progress)
    families = {f"{m} alone": [m] for m in singles}
    if args.concatenated:
        families[f"concatenated ({joined})"] = [joined]
    families[f"late fusion ({' & '.join(singles)})"] = singles
    if args.concatenated:
        families["late fusion of all of them and the concatenation"] = [*singles, joined]
    rows = sweep(fitted, families, labels, queries, progress)
    with_odds(rows)
    data = {"store": str(args.store), "settings": {"ridge": args.ridge, "gamma_scale": args.gamma_scale,
            "text": args.text, "normalization": "power"}, "families": list(families), "candidates": rows,
            "total_seconds": round(time.perf_counter() - start)}
    write_results(args.name, data, HEAD, table(data))


if __name__ == "__main__":
    main()
