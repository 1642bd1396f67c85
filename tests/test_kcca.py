"""KernelCCA: a non-linear relation linear CCA misses, an independent dual solution, Nyström convergence, errors."""

from __future__ import annotations

import numpy as np
import pytest

from annot.errors import ProjectionError
from annot.projection import KernelCCA, LinearCCA
from annot.projection.kcca import chi2_input, chi2_kernel


def nonlinear(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """y depends on x only through |x1 − 0.5|: no linear relation, a strong non-linear one."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, 3))
    y = np.abs(X[:, 0] - 0.5) + 0.02 * rng.normal(size=n)
    return X, np.column_stack([y, rng.normal(size=n)])


def held_out_correlation(model: LinearCCA | KernelCCA, X: np.ndarray, Y: np.ndarray) -> float:
    return abs(float(np.corrcoef(model.transform(X)[:, 0], model.transform_y(Y)[:, 0])[0, 1]))


def test_kcca_finds_what_linear_cca_misses() -> None:
    X, Y = nonlinear(400, seed=0)
    Xt, Yt = nonlinear(300, seed=1)
    linear = LinearCCA(n_components=1, reg_x=1e-3, reg_y=1e-3).fit(X, Y)
    kernel = KernelCCA(n_components=1, reg_x=0.1, reg_y=1e-3, n_landmarks=None).fit(X, Y)
    assert held_out_correlation(linear, Xt, Yt) < 0.2
    assert held_out_correlation(kernel, Xt, Yt) > 0.8
    rho = kernel.canonical_correlations_
    assert np.all((rho >= 0) & (rho <= 1))


def test_exact_kcca_agrees_with_an_independent_dual_solution() -> None:
    """η² are the eigenvalues of C_yy⁻¹ Ycᵀ K_c (K_c + nλ I)⁻¹ Yc / n, from the centred kernel alone."""
    X, Y = nonlinear(150, seed=2)
    reg = 0.2
    model = KernelCCA(reg_x=reg, reg_y=0.01, n_landmarks=None).fit(X, Y)
    n = len(X)
    K = chi2_kernel(X, X, model.gamma_)
    H = np.eye(n) - 1.0 / n
    Kc = H @ K @ H
    rank = model.map_.shape[1]
    lam_x = reg * np.trace(Kc) / (n * rank)
    Yc = Y - Y.mean(0)
    Cyy = Yc.T @ Yc / n
    Cyy += 0.01 * np.trace(Cyy) / Y.shape[1] * np.eye(Y.shape[1])
    M = np.linalg.solve(Cyy, Yc.T @ Kc @ np.linalg.solve(Kc + n * lam_x * np.eye(n), Yc) / n)
    eta = np.sqrt(np.sort(np.linalg.eigvals(M).real)[::-1])
    np.testing.assert_allclose(model.canonical_correlations_, eta, atol=1e-6)


def test_nystrom_converges_to_exact_as_landmarks_grow() -> None:
    X, Y = nonlinear(300, seed=3)
    Xt, _Yt = nonlinear(200, seed=4)
    exact = KernelCCA(n_components=1, reg_x=0.1, n_landmarks=None).fit(X, Y)
    target = exact.transform(Xt)[:, 0]
    gaps = []
    for m in (10, 40, 160, 300):
        approx = KernelCCA(n_components=1, reg_x=0.1, n_landmarks=m, gamma=exact.gamma_).fit(X, Y)
        gaps.append(1.0 - abs(float(np.corrcoef(approx.transform(Xt)[:, 0], target)[0, 1])))
    assert gaps[-1] < 1e-8  # all landmarks: the exact solution
    assert gaps[0] > gaps[2] and gaps[1] > gaps[2]
    assert gaps[2] < 0.01


def test_round_trip_and_negative_split() -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(120, 6))
    Y = np.column_stack([X[:, 0] ** 2, rng.normal(size=120)])
    model = KernelCCA(n_components=2, negative="split", n_landmarks=50).fit(X, Y)
    again = KernelCCA.from_arrays(model.to_arrays())
    np.testing.assert_allclose(again.transform(X), model.transform(X), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(chi2_input(np.array([[1.0, -2.0]]), "split"), [[1.0, 0.0, 0.0, 2.0]])


@pytest.mark.parametrize(
    ("X", "Y", "kwargs", "message"),
    [
        (-np.ones((10, 3)), np.ones((10, 2)), {}, "non-negative"),
        (np.full((10, 3), np.nan), np.ones((10, 2)), {}, "NaN"),
        (np.ones((1, 3)), np.ones((1, 2)), {}, "at least 2"),
        (np.random.default_rng(0).random((10, 3)), np.random.default_rng(1).random((10, 2)), {"n_components": 5}, "n_components"),
        (np.random.default_rng(0).random((10, 3)), np.ones((9, 2)), {}, "same number of rows"),
        (np.random.default_rng(0).random((10, 3)), np.ones((10, 2)), {"negative": "abs"}, "negative must be"),
    ],
)
def test_bad_input_is_a_clear_error_at_fit_time(X, Y, kwargs, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ProjectionError, match=message):
        KernelCCA(**kwargs).fit(X, Y)


@pytest.mark.slow
def test_kcca_store_end_to_end(synthetic, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`annot index --projection kcca` builds a store that annotates as well as the synthetic data allows."""
    from annot.evaluation.evaluate import evaluate
    from annot.indexer import build_index
    from annot.store import StoreDir
    from conftest import fake_settings

    store = tmp_path / "kcca.annot"
    for landmarks in ("all", "60"):
        build_index(synthetic["train"], store, fake_settings(synthetic, projection="kcca", landmarks=landmarks, k=3))
        with StoreDir.open(store) as s:
            p = s.manifest().settings.projection
            assert p.kind == "kcca" and str(p.landmarks) == landmarks
        result = evaluate(store, synthetic["test"], record=False)
        assert result.summary.recall > 0.9 and result.summary.n_plus == 8


def test_gamma_scale_narrows_the_kernel_and_is_checked() -> None:
    X, Y = np.random.default_rng(0).random((40, 6)), np.random.default_rng(1).random((40, 2))
    base = KernelCCA(n_landmarks=None).fit(X, Y)
    narrow = KernelCCA(n_landmarks=None, gamma_scale=2.0).fit(X, Y)
    assert narrow.gamma_ == pytest.approx(2 * base.gamma_)
    np.testing.assert_allclose(chi2_kernel(X, X, narrow.gamma_), chi2_kernel(X, X, base.gamma_) ** 2, rtol=1e-10)
    with pytest.raises(ProjectionError, match="gamma_scale must be > 0"):
        KernelCCA(gamma_scale=0.0)


@pytest.mark.slow
def test_cross_validation_shares_eigendecompositions_without_changing_results() -> None:
    """The tuner's KCCA (one kernel, one eigendecomposition per fold, γ scaled by powering the kernel) scores each
    fold exactly as a KernelCCA fitted from scratch on that fold's images does."""
    from annot.features.text import normalize_features, text_view
    from annot.fitting.cv import cross_validate
    from annot.fitting.splits import cv_splits
    from annot.metrics import per_word_metrics, predictions_matrix, summarize
    from annot.projection import correlation_rows
    from annot.retrieval.scoring import score_queries
    from conftest import candidate

    rng = np.random.default_rng(3)
    labels = rng.random((90, 6)) < 0.3
    labels[labels.sum(1) == 0, 0] = True
    X = (labels @ rng.random((6, 10)) + 0.3 * rng.random((90, 10))).astype(np.float32)
    E, has_vector = rng.standard_normal((6, 4)).astype(np.float32), np.ones(6, bool)
    candidates = [candidate(projection="kcca", text="bv", normalization="power", reg=reg, gamma_scale=s, method="nn")
                  for reg in (0.1, 1.0) for s in (1.0, 2.0)]
    results = {r.candidate: r for r in cross_validate(X, labels, E, has_vector, candidates, folds=3)}
    Xn = normalize_features(X, "power")
    for c in candidates:
        f1s = []
        for held, fit in cv_splits(labels, 3):  # the tuner's folds (seed 0)
            reg, scale = c.projection.reg, c.projection.gamma_scale
            model = KernelCCA(reg_x=reg, reg_y=reg, n_landmarks=None, negative="split", gamma_scale=scale)
            model.fit(Xn, np.zeros((90, 1)))  # only to read γ as the tuner does: from the whole training set
            gamma = model.gamma_
            model = KernelCCA(reg_x=reg, reg_y=reg, n_landmarks=None, negative="split", gamma=gamma)
            U = correlation_rows(model.fit_transform(Xn[fit], text_view(labels[fit], E, has_vector, "bv")))
            T = correlation_rows(model.transform(Xn[held]))
            D = (1.0 - T @ U.T).astype(np.float32)
            scored = score_queries("nn", D, labels[fit], labels[fit].sum(0).astype(np.int64), 5, 4, 0.05)
            metrics = per_word_metrics(labels[held], predictions_matrix([s.words for s in scored], 6))
            f1s.append(summarize(metrics, len(held)).f1)
        assert results[c].fold_f1 == pytest.approx(tuple(f1s), abs=1e-9)


@pytest.mark.slow
def test_cli_gamma_scale_is_used_and_recorded(synthetic, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from annot.model import StoreModel
    from annot.store import StoreDir
    from conftest import invoke

    gammas = {}
    for scale in ("1", "2.5"):
        store = tmp_path / f"g{scale}.annot"
        result = invoke("index", synthetic["train"], "--store", store, "--encoder", "fake", "--words", synthetic["words"],
                        "--projection", "kcca", "--landmarks", "all", "--gamma-scale", scale)
        assert result.exit_code == 0, result.output
        with StoreDir.open(store) as s:
            assert s.manifest().settings.projection.gamma_scale == float(scale)
            gammas[scale] = StoreModel(s).projection.gamma_  # type: ignore[union-attr]
    assert gammas["2.5"] == pytest.approx(2.5 * gammas["1"])
    result = invoke("index", synthetic["train"], "--store", tmp_path / "bad.annot", "--encoder", "fake", "--words",
                    synthetic["words"], "--projection", "kcca", "--gamma-scale", "-1")
    assert result.exit_code != 0 and "--gamma-scale must be > 0" in result.output
    assert not (tmp_path / "bad.annot" / "manifest.json").exists()


@pytest.mark.slow
def test_tune_searches_the_kernel_width_and_writes_the_choice(synthetic, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from annot.evaluation.tune import GRIDS, tune_store
    from annot.indexer import build_index
    from annot.settings import BuildSettings, ProjectionSettings
    from annot.store import StoreDir
    from conftest import fake_settings

    kcca, linear = BuildSettings(projection=ProjectionSettings(kind="kcca")), BuildSettings()
    assert {c.projection.gamma_scale for c in GRIDS["quick"](kcca)} == {1.0, 2.0}
    assert {c.projection.gamma_scale for c in GRIDS["quick"](linear)} == {1.0}
    assert {c.projection.reg for c in GRIDS["quick"](kcca)} == {0.03, 0.3}
    assert {c.projection.reg for c in GRIDS["quick"](linear)} == {0.3}
    store = tmp_path / "tuned.annot"
    build_index(synthetic["train"], store, fake_settings(synthetic, projection="kcca"))
    report = tune_store(store, folds=3)
    assert len(report.results) == 192 and report.chosen == report.results[0].candidate
    with StoreDir.open(store) as s:
        assert s.manifest().settings == report.chosen


def test_a_fold_is_fitted_as_a_store_of_its_images_would_be_with_landmarks() -> None:
    """Cross-validation fits KCCA with Nyström landmarks where the store would (not exact KCCA everywhere): a fold's
    held-out rows are those of a KernelCCA with the same settings fitted from scratch on the fold's images."""
    from annot.features.text import normalize_features, text_view
    from annot.fitting.fit import FoldFitter, is_exact
    from annot.projection import correlation_rows
    from conftest import candidate

    rng = np.random.default_rng(4)
    labels = rng.random((120, 5)) < 0.3
    labels[labels.sum(1) == 0, 0] = True
    X = (labels @ rng.random((5, 8)) + 0.3 * rng.random((120, 8))).astype(np.float32)
    E, has_vector = rng.standard_normal((5, 3)).astype(np.float32), np.ones(5, bool)
    settings = candidate(projection="kcca", text="bv", landmarks="40").projection
    assert not is_exact(settings, 100) and is_exact(settings.replace(landmarks="auto"), 100)
    fit, held = np.arange(100), np.arange(100, 120)
    fold = FoldFitter(X, labels, E, has_vector).fit(fit, held, candidate(text="bv").text.view, settings)
    Xn = normalize_features(X, "power")
    scratch = KernelCCA(None, 0.3, 0.3, n_landmarks=40, negative="split").fit(Xn[fit], text_view(labels[fit], E,
                                                                                                  has_vector, "bv"))
    assert len(scratch.landmarks_) == 40
    np.testing.assert_allclose(fold.T, correlation_rows(scratch.transform(Xn[held])), rtol=1e-5, atol=1e-6)
