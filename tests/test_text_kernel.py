"""KCCA with a Gaussian kernel on the text view: a relation only it finds, an independent dual solution, Nyström
convergence, persistence, cross-validation and the store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from annot.errors import ProjectionError
from annot.projection import KernelCCA
from annot.projection.kcca import chi2_kernel


def squared(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images carry y², texts carry y: every function of the image view is even in y, so no direction of the text
    view itself correlates with it; a kernel on the text view sees y² too."""
    rng = np.random.default_rng(seed)
    Y = rng.normal(size=(n, 2))
    X = np.hstack([Y**2 + 0.05 * rng.normal(size=(n, 2)), rng.random((n, 4))])
    return np.abs(X), Y


def held_out(model: KernelCCA, X: np.ndarray, Y: np.ndarray) -> float:
    return abs(float(np.corrcoef(model.transform(X)[:, 0], model.transform_y(Y)[:, 0])[0, 1]))


def test_a_gaussian_text_kernel_finds_what_a_linear_one_cannot() -> None:
    X, Y = squared(500, seed=0)
    Xt, Yt = squared(300, seed=1)
    linear = KernelCCA(n_components=2, reg_x=0.1, reg_y=0.1, n_landmarks=None).fit(X, Y)
    rbf = KernelCCA(n_components=2, reg_x=0.1, reg_y=0.1, n_landmarks=None, text_kernel="rbf").fit(X, Y)
    assert held_out(linear, Xt, Yt) < 0.2
    assert held_out(rbf, Xt, Yt) > 0.9
    assert rbf.text_ is not None and rbf.text_.width > Y.shape[1]  # more text dimensions than the view's width


def test_exact_kcca_with_two_kernels_agrees_with_the_dual_solution() -> None:
    """η² are the eigenvalues of (K_x + nλ_x I)⁻¹ K_y (K_y + nλ_y I)⁻¹ K_x over the centred kernels of both views,
    each ridge relative to its view's mean variance, as LinearCCA sets it on the mapped features."""
    from sklearn.metrics.pairwise import rbf_kernel

    X, Y = squared(120, seed=2)
    reg_x, reg_y = 0.2, 0.1
    model = KernelCCA(reg_x=reg_x, reg_y=reg_y, n_landmarks=None, text_kernel="rbf", text_gamma_scale=0.5).fit(X, Y)
    assert model.text_ is not None
    n = len(X)
    H = np.eye(n) - 1.0 / n
    Kx = H @ chi2_kernel(X, X, model.gamma_) @ H
    Ky = H @ rbf_kernel(Y, Y, gamma=model.text_.gamma) @ H
    lam_x = reg_x * np.trace(Kx) / (n * model.map_.shape[1])
    lam_y = reg_y * np.trace(Ky) / (n * model.text_.width)
    M = np.linalg.solve(Kx + n * lam_x * np.eye(n), Ky) @ np.linalg.solve(Ky + n * lam_y * np.eye(n), Kx)
    eta = np.sqrt(np.clip(np.sort(np.linalg.eigvals(M).real)[::-1], 0, None))
    top = 10
    np.testing.assert_allclose(model.canonical_correlations_[:top], eta[:top], atol=1e-6)


def test_nystrom_text_map_converges_to_exact() -> None:
    X, Y = squared(240, seed=3)
    Xt, Yt = squared(150, seed=4)
    exact = KernelCCA(n_components=1, reg_x=0.1, reg_y=0.1, n_landmarks=None, text_kernel="rbf").fit(X, Y)
    target = exact.transform_y(Yt)[:, 0]
    gaps = []
    for m in (20, 80, 240):
        approx = KernelCCA(n_components=1, reg_x=0.1, reg_y=0.1, n_landmarks=m, gamma=exact.gamma_,
                           text_kernel="rbf").fit(X, Y)
        assert approx.text_ is not None and len(approx.text_.landmarks) == m
        gaps.append(1.0 - abs(float(np.corrcoef(approx.transform_y(Yt)[:, 0], target)[0, 1])))
    assert gaps[-1] < 1e-8  # all landmarks: the exact solution
    assert gaps[0] > gaps[1]
    assert held_out(approx, Xt, Yt) > 0.9


def test_round_trip_keeps_the_text_kernel() -> None:
    X, Y = squared(100, seed=5)
    model = KernelCCA(n_components=3, reg_x=0.1, reg_y=0.1, n_landmarks=None, text_kernel="rbf").fit(X, Y)
    loaded = KernelCCA.from_arrays(model.to_arrays(), "m.npz")
    assert loaded.text_kernel == "rbf"
    np.testing.assert_allclose(loaded.transform_y(Y[:7]), model.transform_y(Y[:7]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loaded.transform(X[:7]), model.transform(X[:7]), rtol=1e-5, atol=1e-6)
    linear = KernelCCA(n_components=2, n_landmarks=None).fit(X, Y)
    assert "text_map" not in linear.to_arrays() and KernelCCA.from_arrays(linear.to_arrays()).text_ is None


@pytest.mark.parametrize("kwargs, message", [
    ({"text_kernel": "cubic"}, "text_kernel must be one of linear, rbf"),
    ({"text_kernel": "rbf", "text_gamma_scale": 0.0}, "text_gamma_scale must be > 0"),
])
def test_bad_text_kernel_settings_are_clear_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ProjectionError, match=message):
        KernelCCA(**kwargs)  # type: ignore[arg-type]


def test_cross_validation_shares_the_text_map_without_changing_results() -> None:
    """The tuner fits one text map per fold and view and shares it across ridges; each fold still scores exactly as
    a KernelCCA fitted from scratch on the fold's images does (V through the text kernel, for `--space text`)."""
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
    candidates = [candidate(projection="kcca", text="w2v", normalization="power", reg=reg, method="nn", space=space,
                            text_kernel="rbf") for reg in (0.1, 1.0) for space in ("image", "text")]
    results = {r.candidate: r for r in cross_validate(X, labels, E, has_vector, candidates, folds=3)}
    Xn = normalize_features(X, "power")
    gamma = KernelCCA(n_landmarks=None, negative="split").fit(Xn, np.zeros((90, 1))).gamma_  # as the tuner: all images
    for c in candidates:
        f1s = []
        for held, fit in cv_splits(labels, 3):
            reg = c.projection.reg
            model = KernelCCA(reg_x=reg, reg_y=reg, n_landmarks=None, negative="split", gamma=gamma, text_kernel="rbf")
            Y = text_view(labels[fit], E, has_vector, "w2v")
            U = model.fit_transform(Xn[fit], Y)
            rows = correlation_rows(U if c.projection.space == "image" else model.transform_y(Y))
            T = correlation_rows(model.transform(Xn[held]))
            scored = score_queries("nn", (1.0 - T @ rows.T).astype(np.float32), labels[fit],
                                   labels[fit].sum(0).astype(np.int64), 5, 4, 0.05)
            f1s.append(summarize(per_word_metrics(labels[held], predictions_matrix([s.words for s in scored], 6)),
                                 len(held)).f1)
        assert results[c].fold_f1 == pytest.approx(tuple(f1s), abs=1e-9)


@pytest.mark.slow
def test_store_with_a_gaussian_text_kernel(synthetic: dict[str, Path], tmp_path: Path) -> None:
    from annot.evaluation.evaluate import evaluate
    from annot.store import StoreDir
    from conftest import invoke

    store = tmp_path / "rbf.annot"
    result = invoke("index", synthetic["train"], "--store", store, "--encoder", "fake", "--words", synthetic["words"],
                    "--projection", "kcca", "--text-kernel", "rbf", "--text-gamma-scale", "2", "--space", "both",
                    "--k", "3")
    assert result.exit_code == 0, result.output
    with StoreDir.open(store) as s:
        p = s.manifest().settings.projection
        assert (p.text_kernel, p.text_gamma_scale, p.space) == ("rbf", 2.0, "both")
    evaluated = evaluate(store, synthetic["test"], record=False)
    assert evaluated.summary.recall > 0.9 and evaluated.summary.n_plus == 8
    for args, message in [(("--text-kernel", "rbf"), "--text-kernel rbf needs the kcca projection"),
                          (("--projection", "kcca", "--text-kernel", "cubic"), "--text-kernel must be one of"),
                          (("--projection", "kcca", "--text-kernel", "rbf", "--text-gamma-scale", "0"), "must be > 0")]:
        bad = tmp_path / "bad.annot"
        result = invoke("index", synthetic["train"], "--store", bad, "--encoder", "fake", "--words", synthetic["words"], *args)
        assert result.exit_code == 2 and message in result.output, result.output
        assert not (bad / "manifest.json").exists()


@pytest.mark.slow
def test_tune_keeps_the_users_text_kernel(synthetic: dict[str, Path], tmp_path: Path) -> None:
    from annot.errors import AnnotError
    from annot.evaluation.tune import tune_store
    from annot.indexer import build_index
    from annot.store import StoreDir
    from conftest import fake_settings

    store = tmp_path / "tuned.annot"
    build_index(synthetic["train"], store, fake_settings(synthetic, projection="kcca", text_kernel="rbf"))
    report = tune_store(store, folds=3)
    assert {r.candidate.projection.text_kernel for r in report.results} == {"rbf"}
    assert report.chosen.projection.text_kernel == "rbf"
    with StoreDir.open(store) as s:
        assert s.manifest().settings.projection.text_kernel == "rbf"
    with pytest.raises(AnnotError, match="needs the kcca projection"):
        fake_settings(synthetic, text_kernel="rbf")
