"""LinearCCA: invariants, a planted answer, an independent solver, streaming statistics, and its errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from annot.errors import ProjectionError
from annot.projection import CCAStatistics, LinearCCA


def shared_latent(n: int = 2000, p: int = 30, q: int = 12, k: int = 3, noise: float = 0.3, seed: int = 0):
    """Two views built from k shared latent factors: exactly k strong canonical correlations."""
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, k))
    X = Z @ rng.normal(size=(k, p)) + noise * rng.normal(size=(n, p)) + 5.0
    Y = Z @ rng.normal(size=(k, q)) + noise * rng.normal(size=(n, q)) - 2.0
    return X, Y


def test_correlations_in_unit_interval_and_descending() -> None:
    X, Y = shared_latent()
    cca = LinearCCA(n_components=10, reg_x=1e-3, reg_y=1e-3).fit(X, Y)
    rho = cca.canonical_correlations_
    assert rho.shape == (10,)
    assert np.all((rho >= 0) & (rho <= 1))
    assert np.all(np.diff(rho) <= 1e-12)


def test_planted_latent_factors_are_found() -> None:
    X, Y = shared_latent(k=3)
    rho = LinearCCA(n_components=6, reg_x=1e-6, reg_y=1e-6).fit(X, Y).canonical_correlations_
    assert np.all(rho[:3] > 0.9)
    assert np.all(rho[3:] < 0.2)


def test_projected_views_are_whitened_and_correlate_as_reported() -> None:
    X, Y = shared_latent()
    cca = LinearCCA(n_components=5, reg_x=1e-9, reg_y=1e-9).fit(X, Y)
    U, V = cca.transform(X).astype(np.float64), cca.transform_y(Y).astype(np.float64)
    np.testing.assert_allclose(np.cov(U.T, bias=True), np.eye(5), atol=1e-4)
    np.testing.assert_allclose(np.cov(V.T, bias=True), np.eye(5), atol=1e-4)
    np.testing.assert_allclose(np.diag(U.T @ V) / len(U), cca.canonical_correlations_, atol=1e-4)


def test_agrees_with_generalized_eigenproblem() -> None:
    """Eq. 2 solved independently: [[0, Cxy], [Cyx, 0]] w = η [[Cxx + λx, 0], [0, Cyy + λy]] w."""
    X, Y = shared_latent(n=500, p=15, q=8, noise=1.0, seed=3)
    reg = 0.05
    cca = LinearCCA(n_components=8, reg_x=reg, reg_y=reg).fit(X, Y)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    n, p, q = len(X), X.shape[1], Y.shape[1]
    Cxx, Cyy, Cxy = Xc.T @ Xc / n, Yc.T @ Yc / n, Xc.T @ Yc / n
    lx, ly = reg * np.trace(Cxx) / p, reg * np.trace(Cyy) / q
    A = np.block([[np.zeros((p, p)), Cxy], [Cxy.T, np.zeros((q, q))]])
    B = linalg.block_diag(Cxx + lx * np.eye(p), Cyy + ly * np.eye(q))
    eta = np.sort(linalg.eigh(A, B, eigvals_only=True))[::-1][:8]
    np.testing.assert_allclose(cca.canonical_correlations_, eta, atol=1e-8)


def test_works_when_features_outnumber_images() -> None:
    X, Y = shared_latent(n=80, p=300, q=10, k=2)
    cca = LinearCCA(reg_x=0.1, reg_y=0.1).fit(X, Y)
    assert cca.x_weights_.shape == (300, 10)
    assert np.isfinite(cca.transform(X)).all()
    assert cca.canonical_correlations_[0] > 0.9


def test_streamed_statistics_equal_in_memory_fit() -> None:
    X, Y = shared_latent()
    whole = LinearCCA(n_components=4).fit(X, Y)
    stats = CCAStatistics.empty(X.shape[1], Y.shape[1])
    for lo in range(0, len(X), 333):
        stats.update(X[lo : lo + 333], Y[lo : lo + 333])
    merged = CCAStatistics.of(X[:700], Y[:700]) + CCAStatistics.of(X[700:], Y[700:])
    for s in (stats, merged):
        streamed = LinearCCA(n_components=4).fit_statistics(s)
        np.testing.assert_allclose(streamed.canonical_correlations_, whole.canonical_correlations_, rtol=1e-9)
        np.testing.assert_allclose(streamed.x_weights_, whole.x_weights_, rtol=1e-6, atol=1e-9)


def test_round_trip_through_arrays() -> None:
    X, Y = shared_latent()
    cca = LinearCCA(n_components=3, reg_x=0.2, reg_y=0.1).fit(X, Y)
    again = LinearCCA.from_arrays(cca.to_arrays())
    np.testing.assert_array_equal(again.transform(X), cca.transform(X))
    assert (again.reg_x, again.reg_y, again.n_components) == (0.2, 0.1, 3)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda X, Y: LinearCCA(n_components=99).fit(X, Y), "n_components must be in"),
        (lambda X, Y: LinearCCA().fit(X[:1], Y[:1]), "at least 2"),
        (lambda X, Y: LinearCCA().fit(X, Y[:-1]), "same number of rows"),
        (lambda X, Y: LinearCCA().fit(np.where(X > 6, np.nan, X), Y), "NaN"),
        (lambda X, Y: LinearCCA().transform(X), "not fitted"),
        (lambda X, Y: LinearCCA(n_components=2).fit(X, Y).transform(X[:, :5]), "columns"),
        (lambda X, Y: LinearCCA(reg_x=-1).fit(X, Y), ">= 0"),
    ],
)
def test_errors_say_what_is_wrong(make, message: str) -> None:  # type: ignore[no-untyped-def]
    X, Y = shared_latent(n=100)
    with pytest.raises(ProjectionError, match=message):
        make(X, Y)
