"""``annot tune``: choosing a store's settings by cross-validation on its training images only.

The candidates are the store's own settings with the searched ones changed (text view, normalisation, ridge, kernel
width, K, τ, α, the word ranking, the method); every other setting (encoder, word vectors, index, feature precision,
how the work runs) stays the store's. Each candidate is cross-validated with :func:`annot.fitting.cv.cross_validate`
and recorded as a run; the store is rebuilt with the chosen one (:func:`annot.indexer.rebuild`).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from annot.errors import AnnotError
from annot.features.words import load_word_vectors
from annot.fitting.cv import CVResult, cross_validate
from annot.fitting.fit import load_training_set
from annot.fitting.splits import check_design
from annot.indexer import rebuild
from annot.indexer.build import training_ids
from annot.model import StoreModel
from annot.progress import NoProgress, Progress
from annot.schema import runs
from annot.schema.writes import insert_rows, next_id
from annot.settings import BuildSettings, ProjectionKind, Score, SettingsError, Space, TextView
from annot.store import StoreDir


def grid(base: BuildSettings, **values: Sequence[Any]) -> list[BuildSettings]:
    """Every combination of the given settings on top of ``base``; names are ``part__field`` (``scoring__k``) or a
    top-level field: ``grid(base, projection__reg=[0.3, 1.0], scoring__k=[5, 16])``."""
    names = list(values)
    out = []
    for combo in itertools.product(*values.values()):
        changes: dict[str, dict[str, Any]] = {}
        for name, value in zip(names, combo, strict=True):
            part, _, field = name.partition("__")
            changes.setdefault(part, {})[field] = value
        settings = base
        for part, fields in changes.items():
            settings = settings.replace(**{part: getattr(settings, part).replace(**fields)})
        out.append(settings)
    return out


def _widths(kind: ProjectionKind) -> list[float]:
    """KCCA's kernel widths to try: γ × 1 and × 2, between them every KCCA row's choice on Corel-5k (× 0.5 and × 4
    never came near); linear CCA has none."""
    return [1.0, 2.0] if kind is ProjectionKind.KCCA else [1.0]


def _quick(base: BuildSettings) -> list[BuildSettings]:
    """A small grid around the settings that won on Corel-5k: a minute or two on a few thousand images."""
    kind = base.projection.kind
    return grid(base, text__view=[TextView.BV, TextView.W2V_BV], projection__normalization=["none", "power"],
                projection__reg=[0.03, 0.3] if kind is ProjectionKind.KCCA else [0.3],
                projection__gamma_scale=_widths(kind), scoring__method=["cca-knn"], scoring__score=[Score.EQ5],
                scoring__k=[5, 16], scoring__temperature=[0.05, 0.1], scoring__frequency_power=[0.25, 0.375, 0.5])


def _full(base: BuildSettings) -> list[BuildSettings]:
    """The quick grid's neighbourhood widened: every text view, transfer in each space, and standardised CCA-KNN."""
    kind = base.projection.kind
    views = [TextView.W2V, TextView.BV, TextView.W2V_BV]
    common: dict[str, Sequence[Any]] = {"projection__normalization": ["none", "power"], "projection__reg": [0.3, 1.0],
              "projection__gamma_scale": _widths(kind)}
    return (grid(base, text__view=views, **common, scoring__method=["cca-knn"], scoring__score=[Score.EQ5],
                 scoring__k=[5, 8, 16], scoring__temperature=[0.05, 0.1, 0.2],
                 scoring__frequency_power=[0.0, 0.25, 0.5, 0.75])
            + grid(base, text__view=views, **common, projection__space=list(Space), scoring__method=["nn"],
                   scoring__score=[Score.EQ5])
            + grid(base, text__view=[TextView.W2V, TextView.W2V_BV], **common, scoring__method=["cca-knn"],
                   scoring__k=[8, 16, 32], scoring__temperature=[0.05, 0.1, 0.2],
                   scoring__score=[Score.STANDARDIZED, Score.HELD_OUT]))


GRIDS: dict[str, Callable[[BuildSettings], list[BuildSettings]]] = {"quick": _quick, "full": _full}


def choose(results: Sequence[CVResult], min_f1: float | None = None) -> CVResult:
    """The chosen candidate: the highest CV F1; with ``min_f1`` (a fraction), the most words recalled (CV N+) among
    candidates whose CV F1 is at least ``min_f1``, ties to the higher F1 (the highest CV F1 when none reaches it).
    For users who want tags for more of their vocabulary at a stated precision-recall balance."""
    best = max(results, key=lambda r: r.f1)
    if min_f1 is None:
        return best
    floor = [r for r in results if r.f1 >= min_f1]
    return max(floor, key=lambda r: (r.n_plus, r.f1)) if floor else best


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


@dataclass(frozen=True)
class TuneReport:
    results: list[CVResult]
    run_ids: list[int]
    chosen_result: CVResult
    seconds: float
    tied: list[CVResult]  # candidates CV cannot rank below the chosen one (``ties``)
    standard_error: float  # of the chosen candidate's CV F1

    @property
    def chosen(self) -> BuildSettings:
        return self.chosen_result.candidate


def searched(settings: BuildSettings) -> dict[str, Any]:
    """The settings a tuning grid searches, flat, for tables and run records."""
    p, s = settings.projection, settings.scoring
    return {"text": settings.text.view.value, "normalization": p.normalization.value, "reg": p.reg,
            "gamma_scale": p.gamma_scale, "space": p.space.value, "method": s.method, "score": s.score.value,
            "k": s.k, "temperature": s.temperature, "frequency_power": s.frequency_power}


def tune_store(store_root: Path, *, grid_name: str = "quick", folds: int = 5, design: str = "random",
               holdout: float = 0.1, min_f1: float | None = None, progress: Progress | None = None,
               wait: bool | float = False) -> TuneReport:
    """Cross-validate a grid of the store's settings on its training images only (``design`` and ``holdout`` as
    :func:`annot.fitting.splits.cv_splits`), record each candidate as a run, and rebuild the store with the chosen
    one (``choose``: the highest CV F1, or with ``min_f1`` the most words recalled at that F1)."""
    progress = progress or NoProgress()
    if grid_name not in GRIDS:
        raise SettingsError("grid", f"must be one of {', '.join(GRIDS)}, got {grid_name!r}")
    if min_f1 is not None and not 0 < min_f1 < 1:
        raise SettingsError("min_f1", f"must be a percentage between 0 and 100, got {100 * min_f1:g}")
    try:  # before anything is written
        check_design(folds, design, holdout)
    except ValueError as exc:
        raise AnnotError(f"--{exc}") from None
    start = time.perf_counter()
    with StoreDir.open(Path(store_root)) as store:
        model = StoreModel(store)
        base = model.settings
        training = load_training_set(store, model.feature_cache(), training_ids(store), tuple(model.vocabulary),
                                     tuple(model.tag_ids), load_word_vectors(model.manifest.words.source))
    candidates = GRIDS[grid_name](base)
    results = cross_validate(training.X, training.labels, training.E, training.has_vector, candidates, folds=folds,
                             design=design, holdout=holdout, progress=progress)
    chosen_result = choose(results, min_f1)
    rebuild(Path(store_root), chosen_result.candidate, progress, wait=wait)
    how = {"folds": folds, "cv": design, **({"holdout": holdout} if design == "cover" else {})}
    dataset = f"cv:{folds}-{'fold' if design == 'random' else 'cover'}:{Path(store_root).resolve()}"
    with StoreDir.open(Path(store_root), write=True, wait=wait) as store:
        manifest_sha = store.manifest_sha()
        with store.db.begin() as conn:
            first = next_id(conn, runs)
            ids = list(range(first, first + len(results)))
            insert_rows(conn, runs, [
                {"id": run_id, "created_at": datetime.now(UTC).replace(tzinfo=None), "method": r.candidate.scoring.method,
                 "params_json": json.dumps({**searched(r.candidate), **how, "fold_f1": r.fold_f1,
                                            "fold_n_plus": r.fold_n_plus}, sort_keys=True),
                 "dataset": dataset, "store_manifest_sha": manifest_sha, "precision": r.precision, "recall": r.recall,
                 "f1": r.f1, "n_plus": round(r.n_plus), "n_images": len(training.X)}
                for run_id, r in zip(ids, results, strict=True)
            ])
    return TuneReport(results, ids, chosen_result, time.perf_counter() - start, ties(results, chosen_result),
                      standard_error(chosen_result))
