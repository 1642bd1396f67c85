"""Choosing hyperparameters by k-fold cross-validation on the training split only.

Each fold fits the projection on the other folds and annotates its held-out images with the same scoring code as
``annot query`` (:func:`annot.retrieval.scoring.score_neighbours`), scored with the same per-word metrics as
``annot eval``. Candidates that share a projection share its fit, so a grid over K and the temperature is cheap.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from annot.errors import AnnotError
from annot.evaluation.metrics import per_word_metrics, predictions_matrix, summarize
from annot.evaluation.splits import check_design, cv_splits
from annot.features.text import normalize_features, text_view, usable_rows
from annot.features.words import load_word_vectors
from annot.indexer.build import IndexConfig, build_index, load_training_set
from annot.indexer.features import FeatureCache
from annot.progress import NoProgress, Progress
from annot.projection import KernelCCA, LinearCCA
from annot.projection.kcca import chi2_input, chi2_kernel, default_gamma, kernel_map
from annot.projection.registry import SPACES, space_rows
from annot.projection.text_kernel import TextMap
from annot.retrieval.indexes import correlation_rows
from annot.retrieval.scoring import (
    cca_knn_scores,
    held_out_standards,
    score_queries,
    semantic_neighbours,
    standardize,
    tag_k,
    top_words,
    word_standards,
)
from annot.schema import runs
from annot.schema.database import insert_rows, next_id
from annot.store import Store


@dataclass(frozen=True)
class Candidate:
    text: str = "w2v+bv"
    normalization: str = "power"
    reg: float = 0.3
    n_components: int | None = None
    method: str = "cca-knn"
    k: int = 4
    temperature: float = 0.05
    frequency_power: float = 0.0
    projection: str = "linear-cca"
    depth: int = 0
    k_power: float = 0.0
    gamma_scale: float = 1.0  # KCCA only: the χ² kernel's γ as a multiple of 1 / mean χ² distance
    space: str = "image"  # the training images' rows queries are compared with (annot.projection.registry.space_rows)
    text_kernel: str = "linear"  # KCCA only: linear or rbf on the text view (annot.projection.text_kernel)
    score: str = "eq5"  # CCA-KNN's word ranking: Eq. 5, or standardised per word (annot.retrieval.scoring.standardize)

    @property
    def projection_key(self) -> tuple[str, str, float, int | None, str, float, str]:
        return (self.text, self.normalization, self.reg, self.n_components, self.projection, self.gamma_scale,
                self.text_kernel)


@dataclass(frozen=True)
class CVResult:
    candidate: Candidate
    f1: float
    precision: float
    recall: float
    n_plus: float
    fold_f1: tuple[float, ...]
    fold_n_plus: tuple[float, ...] = ()


def grid(**values: Sequence[object]) -> list[Candidate]:
    """Every combination of the given Candidate fields: ``grid(reg=[0.1, 0.3], k=[2, 4])``."""
    names = list(values)
    return [Candidate(**dict(zip(names, combo, strict=True))) for combo in itertools.product(*values.values())]  # type: ignore[arg-type]


def within_pool(D: NDArray[np.float32], depth: int) -> NDArray[np.float32]:
    """Distances with everything beyond each query's ``depth`` nearest set to inf (0: the whole set)."""
    if not depth or depth >= D.shape[1]:
        return D
    out = np.full_like(D, np.inf)
    nearest = np.argpartition(D, depth - 1, axis=1)[:, :depth]
    np.put_along_axis(out, nearest, np.take_along_axis(D, nearest, 1), axis=1)
    return out


def _full_kernel(X: NDArray[np.float32]) -> tuple[NDArray[np.float64], float, NDArray[np.float64]]:
    """The χ² kernel among all training images, computed once and sliced by every fold."""
    Xk = chi2_input(X, "split")
    gamma = default_gamma(Xk)
    return Xk, gamma, chi2_kernel(Xk, Xk, gamma)


def _scaled_kernel(
    kernels: dict[tuple[str, float], tuple[NDArray[np.float64], float, NDArray[np.float64]]],
    normalization: str, scale: float, Xn: NDArray[np.float32],
) -> tuple[NDArray[np.float64], float, NDArray[np.float64]]:
    """The training set's χ² kernel at ``scale`` × the default γ, cached in ``kernels``: computed once per
    normalisation, other widths by powers of it (exp(−sγd) = exp(−γd)^s)."""
    if (normalization, 1.0) not in kernels:
        kernels[normalization, 1.0] = _full_kernel(Xn)
    if (normalization, scale) not in kernels:
        Xk, gamma, K = kernels[normalization, 1.0]
        kernels[normalization, scale] = (Xk, gamma * scale, K**scale)
    return kernels[normalization, scale]


def _fold_standards(
    candidates: Sequence[Candidate], U: NDArray[np.floating], V: NDArray[np.floating], labels: NDArray[np.bool_],
    frequency: NDArray[np.int64],
) -> dict[Candidate, tuple[NDArray[np.float64], NDArray[np.float64]]]:
    """Each standardised candidate's word standards on a fold's fitting images, as ``AnnotationModel.standards``
    computes them on a store: every fitting image a query over the others (its own row left out). Candidates that
    differ only in τ or α share the semantic neighbours."""
    out: dict[Candidate, tuple[NDArray[np.float64], NDArray[np.float64]]] = {}
    if not candidates:
        return out
    queries = correlation_rows(U)
    pools: dict[tuple[str, int], NDArray[np.float32]] = {}  # the fitting images against each other, per space and pool
    neighbours: dict[tuple[str, int, int, float], NDArray[np.bool_]] = {}
    for c in candidates:
        if (c.space, c.depth) not in pools:
            F = (1.0 - queries @ space_rows(U, V, c.space).T).astype(np.float32)
            np.fill_diagonal(F, np.inf)
            pools[c.space, c.depth] = within_pool(F, c.depth)
        F = pools[c.space, c.depth]
        key = (c.space, c.depth, c.k, c.k_power)
        if key not in neighbours:
            neighbours[key] = semantic_neighbours(F, labels, tag_k(c.k, c.k_power, frequency))
        scores = cca_knn_scores(F, labels, c.k, c.temperature, frequency, c.frequency_power, chosen=neighbours[key])[0]
        out[c] = word_standards(scores)
    return out


def choose(results: Sequence[CVResult], min_f1: float | None = None) -> CVResult:
    """The chosen candidate: the highest CV F1; with ``min_f1`` (a fraction), the most words recalled (CV N+) among
    candidates whose CV F1 is at least ``min_f1``, ties to the higher F1 (the highest CV F1 when none reaches it).
    For users who want tags for more of their vocabulary at a stated precision-recall balance."""
    best = max(results, key=lambda r: r.f1)
    if min_f1 is None:
        return best
    floor = [r for r in results if r.f1 >= min_f1]
    return max(floor, key=lambda r: (r.n_plus, r.f1)) if floor else best


def target_odds(results: Sequence[CVResult], min_f1: float, min_n_plus: float) -> list[float]:
    """Each candidate's estimated chance that one more hold-out like the folds meets both targets, F1 ≥ ``min_f1``
    and N+ ≥ ``min_n_plus``: Φ(z_F1) Φ(z_N+), where z is the candidate's CV mean minus the target over the
    fold-to-fold standard deviation. The deviations are pooled over all candidates (the median of theirs), so that a
    candidate cannot win on a spread that happened to be small over a few folds; the two are taken as independent."""
    from scipy.special import ndtr

    f1 = np.array([r.f1 for r in results])
    n_plus = np.array([r.n_plus for r in results])
    spread_f1 = _pooled_deviation([r.fold_f1 for r in results])
    spread_n_plus = _pooled_deviation([r.fold_n_plus for r in results])
    odds = ndtr((f1 - min_f1) / spread_f1) * ndtr((n_plus - min_n_plus) / spread_n_plus)
    return [float(p) for p in odds]


def choose_for_targets(results: Sequence[CVResult], min_f1: float, min_n_plus: float) -> CVResult:
    """The candidate most likely to meet both targets on a new hold-out of the folds' size (``target_odds``); ties
    to the higher CV F1. Unlike ``choose(results, min_f1)``, which takes the most words at the F1 floor and so lands
    on it, this keeps a margin on both sides, in units of how much a hold-out's scores vary."""
    odds = target_odds(results, min_f1, min_n_plus)
    return max(zip(odds, results, strict=True), key=lambda pair: (pair[0], pair[1].f1))[1]


def _pooled_deviation(folds: Sequence[tuple[float, ...]]) -> float:
    """The median over candidates of their fold-to-fold standard deviation (a tiny floor keeps z finite)."""
    spreads = [np.std(f, ddof=1) for f in folds if len(f) > 1]
    if not spreads:
        raise ValueError("target odds need at least two folds per candidate")
    return max(float(np.median(spreads)), 1e-9)


def ties(results: Sequence[CVResult], chosen: CVResult) -> list[CVResult]:
    """The candidates cross-validation cannot rank below ``chosen``: their F1 is behind it by at most one paired
    standard error over the shared folds (the per-fold differences' spread / √folds), or ahead of it. On Corel-5k the
    order within such a band did not carry over to the test split (BENCHMARKS.md), so a user should read the band, not
    the single best, as what the data support."""
    base = np.asarray(chosen.fold_f1)
    gaps = [(r, base - np.asarray(r.fold_f1)) for r in results if r is not chosen]
    return [r for r, gap in gaps if gap.mean() <= _standard_error(gap)]


def standard_error(result: CVResult) -> float:
    """The standard error of a candidate's CV F1 over its folds."""
    return _standard_error(np.asarray(result.fold_f1))


def _standard_error(values: NDArray[np.float64]) -> float:
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def cross_validate(
    X: NDArray[np.float32],
    labels: NDArray[np.bool_],
    E: NDArray[np.float32],
    has_vector: NDArray[np.bool_],
    candidates: Sequence[Candidate],
    *,
    folds: int = 5,
    seed: int = 0,
    n_tags: int = 5,
    design: str = "random",
    holdout: float = 0.1,
    progress: Progress | None = None,
    collect: dict[Candidate, list[tuple[NDArray[np.int64], NDArray[np.float64]]]] | None = None,
) -> list[CVResult]:
    """Mean held-out P / R / F1 / N+ of each candidate over ``folds`` splits of the training images (``design``
    and ``holdout`` as :func:`annot.evaluation.splits.cv_splits`), best F1 first.

    A ``standardized-held-out`` candidate is scored after every fold has been fitted: each fold's held-out images
    are standardised against the other folds' held-out scores (without the images this fold holds). ``collect``
    receives those candidates' (held-out rows, Eq. 5 scores) per fold."""
    progress = progress or NoProgress()
    pending: dict[Candidate, list[tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64]]]] = defaultdict(list)
    splits = cv_splits(labels, folds, design, holdout, seed)
    by_projection: dict[tuple[str, str, float, int | None, str, float, str], list[Candidate]] = defaultdict(list)
    for c in candidates:
        by_projection[c.projection_key].append(c)
    fold_scores: dict[Candidate, list[tuple[float, float, float, int]]] = defaultdict(list)
    kernels: dict[tuple[str, float], tuple[NDArray[np.float64], float, NDArray[np.float64]]] = {}
    normalized: dict[str, NDArray[np.float32]] = {}
    with progress.task("cross-validating", folds * len(by_projection)) as advance:
        for held, fit in splits:
            maps: dict[tuple[str, float, bytes], tuple[NDArray[np.float64], tuple[NDArray[np.float64], NDArray[np.float64]], NDArray[np.float64]]] = {}
            text_maps: dict[tuple[str, str], TextMap | None] = {}  # one text kernel map per fold, view and kernel
            for (text, normalization, reg, n_components, projection, gamma_scale, text_kernel), group in by_projection.items():
                if normalization not in normalized:
                    normalized[normalization] = normalize_features(X, normalization)
                Xn = normalized[normalization]
                keep = fit[usable_rows(labels[fit], has_vector, text)]
                Y = text_view(labels[keep], E, has_vector, text)
                if projection == "kcca":
                    Xk, gamma, K = _scaled_kernel(kernels, normalization, gamma_scale, Xn)
                    key = (normalization, gamma_scale, keep.tobytes())
                    if key not in maps:  # one eigendecomposition per fold and kernel, shared by every ridge
                        eigen = kernel_map(K[np.ix_(keep, keep)])
                        maps[key] = (Xk[keep], eigen, K[np.ix_(held, keep)] @ eigen[1])
                    landmarks, eigen, held_map = maps[key]
                    model = KernelCCA(n_components, reg, reg, n_landmarks=None, negative="split", text_kernel=text_kernel)
                    if (text, text_kernel) not in text_maps:
                        text_maps[text, text_kernel] = model.fit_text(Y)
                    text_map = text_maps[text, text_kernel]
                    model.fit_exact(landmarks, gamma, eigen, Y, text_map)
                    U = model.cca_.transform(model.map_ * model.eigenvalues_)
                    V = model.cca_.transform_y(text_map.landmark_rows() if text_map is not None else Y)
                    T = correlation_rows(model.cca_.transform(held_map))
                else:
                    cca = LinearCCA(n_components, reg, reg).fit(Xn[keep], Y)
                    U, V = cca.transform(Xn[keep]), cca.transform_y(Y)
                    T = correlation_rows(cca.transform(Xn[held]))
                frequency = labels[keep].sum(axis=0).astype(np.int64)
                D = {space: (1.0 - T @ space_rows(U, V, space).T).astype(np.float32) for space in {c.space for c in group}}
                pooled = {(space, depth): within_pool(D[space], depth) for space, depth in {(c.space, c.depth) for c in group}}
                standards = _fold_standards([c for c in group if c.method == "cca-knn" and c.score == "standardized"],
                                            U, V, labels[keep], frequency)
                for c in group:
                    if c.method == "cca-knn" and c.score == "standardized-held-out":
                        raw = cca_knn_scores(pooled[c.space, c.depth], labels[keep], tag_k(c.k, c.k_power, frequency),
                                             c.temperature, frequency, c.frequency_power)[0]
                        pending[c].append((held, raw, frequency))
                        continue
                    scored = score_queries(
                        c.method, pooled[c.space, c.depth], labels[keep], frequency, n_tags, c.k, c.temperature,
                        c.frequency_power, c.k_power, standards.get(c),
                    )
                    predicted = [s.words for s in scored]
                    metrics = per_word_metrics(labels[held], predictions_matrix(predicted, labels.shape[1]))
                    s = summarize(metrics, len(held))
                    fold_scores[c].append((s.f1, s.precision, s.recall, s.n_plus))
                advance(1)
    for c, parts in pending.items():
        fold_scores[c] = [_held_out_fold(parts, f, labels, n_tags) for f in range(len(parts))]
        if collect is not None:
            collect[c] = [(held, raw) for held, raw, _frequency in parts]
    results = []
    for candidate, scores in fold_scores.items():
        a = np.array(scores, np.float64)
        results.append(CVResult(candidate, float(a[:, 0].mean()), float(a[:, 1].mean()), float(a[:, 2].mean()),
                                float(a[:, 3].mean()), tuple(float(v) for v in a[:, 0]),
                                tuple(float(v) for v in a[:, 3])))
    return sorted(results, key=lambda r: -r.f1)


def _held_out_fold(parts: Sequence[tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64]]], fold: int,
                   labels: NDArray[np.bool_], n_tags: int) -> tuple[float, float, float, int]:
    """F1, P, R and N+ of fold ``fold``'s held-out images ranked by their scores standardised against the other
    folds' held-out scores, leaving out the images this fold holds."""
    held, raw, frequency = parts[fold]
    others = [(rows, scores) for g, (rows, scores, _f) in enumerate(parts) if g != fold]
    z = standardize(raw, held_out_standards(others, held))
    predicted = [top_words(row, frequency, n_tags, -np.inf) for row in z]
    s = summarize(per_word_metrics(labels[held], predictions_matrix(predicted, labels.shape[1])), len(held))
    return s.f1, s.precision, s.recall, s.n_plus


HELD_OUT_FOLDS, HELD_OUT_SIZE = 5, 1 / 9  # cover hold-outs of a ninth each, as Corel-5k's test split (499 of 4,500)


def held_out_word_standards(store: Store, indexed: NDArray[np.int64], progress: Progress | None = None
                            ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Held-out standards (:func:`annot.retrieval.scoring.held_out_standards`) for the store's own settings over its
    ``indexed`` training images: the projection fitted again on each of ``HELD_OUT_FOLDS`` cover hold-outs' fitting
    images (cached features, as ``cross_validate`` fits a candidate: exact KCCA), each hold-out's images scored with
    Eq. 5 from the others, the scores pooled over the hold-outs."""
    manifest = store.manifest()
    config, annotation = manifest["config"], manifest["annotation"]
    cache = FeatureCache(store.features_dir / manifest["encoder"]["key"], manifest["encoder"]["dim"])
    training = load_training_set(store, cache, tuple(manifest["vocabulary"]["words"]),
                                 load_word_vectors(manifest["words"]["source"]), "bv")
    rows = np.isin(training.image_ids, indexed)  # add/remove switch the index before the database
    X, labels = training.X[rows], training.labels[rows]
    candidate = Candidate(
        text=config["text"], normalization=config["normalization"], reg=config["reg_x"],
        n_components=config["n_components"], method="cca-knn", k=annotation["k"], temperature=annotation["temperature"],
        frequency_power=annotation["frequency_power"], projection=config["projection"], depth=annotation["depth"],
        k_power=annotation["k_power"], gamma_scale=config["gamma_scale"], space=config["space"],
        text_kernel=config["text_kernel"], score="standardized-held-out",
    )
    collect: dict[Candidate, list[tuple[NDArray[np.int64], NDArray[np.float64]]]] = {}
    cross_validate(X, labels, training.E, training.has_vector, [candidate], folds=HELD_OUT_FOLDS, design="cover",
                   holdout=HELD_OUT_SIZE, progress=progress, collect=collect)
    return held_out_standards(collect[candidate])


def _widths(projection: str) -> list[float]:
    """KCCA's kernel widths to try: γ × 1 and × 2, between them every KCCA row's choice on Corel-5k (× 0.5 and × 4
    never came near); linear CCA has none."""
    return [1.0, 2.0] if projection == "kcca" else [1.0]


def _quick_ridges(projection: str) -> list[float]:
    """The quick grid's ridges: 0.3 won every linear CCA-KNN row on Corel-5k; KCCA's best rows chose 0.03 or 0.3."""
    return [0.03, 0.3] if projection == "kcca" else [0.3]


GRIDS = {
    # a small grid around the settings that won on Corel-5k (for Lite0 with pooled stages and for Lite0's head alone):
    # a minute or two on a few thousand images
    "quick": lambda projection, text_kernel="linear": grid(
        projection=[projection], text=["bv", "w2v+bv"], normalization=["none", "power"], reg=_quick_ridges(projection),
        k=[5, 16], temperature=[0.05, 0.1], frequency_power=[0.25, 0.375, 0.5], gamma_scale=_widths(projection), text_kernel=[text_kernel],
    ),
    # the main block of benchmarks/corel5k.py's grid as it was before session 5 (the benchmark's grid has since
    # dropped τ 0.2 and added α 0.375 and 0.625)
    "full": lambda projection, text_kernel="linear": grid(
        projection=[projection], text=["w2v", "bv", "w2v+bv"], normalization=["none", "power"], reg=[0.3, 1.0],
        k=[5, 8, 16], temperature=[0.05, 0.1, 0.2], frequency_power=[0.0, 0.25, 0.5, 0.75],
        gamma_scale=_widths(projection), text_kernel=[text_kernel],
    ) + grid(projection=[projection], text=["w2v", "bv", "w2v+bv"], normalization=["none", "power"],
             reg=[0.3, 1.0], method=["nn"], gamma_scale=_widths(projection), space=SPACES, text_kernel=[text_kernel])
    # standardised CCA-KNN (session 10): wider K and τ, as the frontier benchmark's candidates were; with held-out
    # standards since session 16
    + grid(projection=[projection], text=["w2v", "w2v+bv"], normalization=["none", "power"], reg=[0.3, 1.0],
           k=[8, 16, 32], temperature=[0.05, 0.1, 0.2], score=["standardized", "standardized-held-out"],
           gamma_scale=_widths(projection), text_kernel=[text_kernel]),
}


@dataclass(frozen=True)
class TuneReport:
    results: list[CVResult]
    run_ids: list[int]
    chosen_result: CVResult
    seconds: float
    tied: list[CVResult]  # candidates CV cannot rank below the chosen one (``ties``)
    standard_error: float  # of the chosen candidate's CV F1
    odds: float | None = None  # with both targets: the chosen candidate's estimated chance of meeting them

    @property
    def chosen(self) -> Candidate:
        return self.chosen_result.candidate


def tune_store(
    corpus: Path,
    store_root: Path,
    base: IndexConfig,
    *,
    grid_name: str = "quick",
    folds: int = 5,
    design: str = "random",
    holdout: float = 0.1,
    min_f1: float | None = None,
    min_n_plus: float | None = None,
    progress: Progress | None = None,
) -> TuneReport:
    """Index ``corpus`` (reusing cached features), cross-validate a grid on its training images only (``design``
    and ``holdout`` as :func:`annot.evaluation.splits.cv_splits`), record each candidate as a run, and rebuild the
    store with the chosen candidate's settings (``choose``: the highest CV F1, or with ``min_f1`` the most words
    recalled at that F1; with ``min_n_plus`` as well, ``choose_for_targets``: the likeliest to reach both)."""
    import time

    progress = progress or NoProgress()
    if grid_name not in GRIDS:
        raise AnnotError(f"--grid must be one of {', '.join(GRIDS)}, got {grid_name!r}")
    if min_f1 is not None and not 0 < min_f1 < 1:
        raise AnnotError(f"--min-f1 must be a percentage between 0 and 100, got {100 * min_f1:g}")
    if min_n_plus is not None and min_f1 is None:
        raise AnnotError("--min-n-plus needs --min-f1: the two targets are chosen for together")
    if min_n_plus is not None and min_n_plus < 0:
        raise AnnotError(f"--min-n-plus must not be negative, got {min_n_plus:g}")
    try:  # before anything is written
        check_design(folds, design, holdout)
    except ValueError as exc:
        raise AnnotError(f"--{exc}") from None
    start = time.perf_counter()
    build_index(corpus, store_root, base, progress)
    with Store.open(store_root) as store:
        manifest = store.manifest()
        cache = FeatureCache(store.features_dir / manifest["encoder"]["key"], manifest["encoder"]["dim"])
        words = load_word_vectors(manifest["words"]["source"])
        training = load_training_set(store, cache, tuple(manifest["vocabulary"]["words"]), words, "bv")
    candidates = GRIDS[grid_name](base.projection, base.text_kernel)  # the text kernel is the user's, not searched
    results = cross_validate(training.X, training.labels, training.E, training.has_vector, candidates,
                             folds=folds, design=design, holdout=holdout, progress=progress)
    odds = None
    if min_f1 is not None and min_n_plus is not None:  # check_design has made sure of two folds at least
        chosen_result = choose_for_targets(results, min_f1, min_n_plus)
        odds = max(target_odds(results, min_f1, min_n_plus))  # the chosen candidate's
    else:
        chosen_result = choose(results, min_f1)
    chosen = chosen_result.candidate
    config = replace(base, score=chosen.score, text=chosen.text, normalization=chosen.normalization, reg_x=chosen.reg, reg_y=chosen.reg,
                     n_components=chosen.n_components, method=chosen.method, k=chosen.k,
                     temperature=chosen.temperature, frequency_power=chosen.frequency_power, depth=chosen.depth,
                     k_power=chosen.k_power, gamma_scale=chosen.gamma_scale, space=chosen.space,
                     text_kernel=chosen.text_kernel)
    build_index(corpus, store_root, config, progress)
    how = {"folds": folds, "cv": design, **({"holdout": holdout} if design == "cover" else {})}
    dataset = f"cv:{folds}-{'fold' if design == 'random' else 'cover'}:{corpus.resolve()}"
    with Store.open(store_root) as store:
        manifest_sha = store.manifest_sha()
        with store.db.begin() as conn:
            first = next_id(conn, runs)
            ids = list(range(first, first + len(results)))
            insert_rows(conn, runs, [
                {"id": run_id, "created_at": datetime.now(UTC).replace(tzinfo=None),
                 "method": r.candidate.method,
                 "params_json": json.dumps({**asdict(r.candidate), **how, "fold_f1": r.fold_f1,
                                          "fold_n_plus": r.fold_n_plus}, sort_keys=True),
                 "dataset": dataset, "store_manifest_sha": manifest_sha,
                 "precision": r.precision, "recall": r.recall, "f1": r.f1, "n_plus": round(r.n_plus),
                 "n_images": len(training.X)}
                for run_id, r in zip(ids, results, strict=True)
            ])
    return TuneReport(results, ids, chosen_result, time.perf_counter() - start, ties(results, chosen_result),
                      standard_error(chosen_result), odds)
