"""Regularized linear CCA in closed form (paper §3.3, Eq. 1-2; Hardoon et al. 2004).

With C_xx, C_yy, C_xy the (co)variances of the centred views and λ_x, λ_y their ridges, the directions solve the
generalized eigenproblem of Eq. 2. We solve it without iteration: whiten each view with the Cholesky factor of its
regularized covariance (C_xx + λ_x I = L_x L_xᵀ), take the SVD of the whitened cross-covariance
M = L_x⁻¹ C_xy L_y⁻ᵀ = U S Vᵀ, and map back: W_x = L_x⁻ᵀ U, W_y = L_y⁻ᵀ V. The singular values S are the
canonical correlations η. Because the problem is built from (co)variances, the fit needs only sufficient
statistics (n, Σx, Σy, XᵀX, XᵀY, YᵀY), which :class:`CCAStatistics` accumulates in chunks and merges.

Regularization is relative to scale: λ_x = reg_x · tr(C_xx) / p (the mean variance), so one value suits any feature
width or magnitude; it also makes C_xx + λ_x I positive definite when features outnumber images (p > n).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from annot.errors import ProjectionError

Float = NDArray[np.float64]


def _check_matrix(name: str, A: NDArray[np.floating] | NDArray[np.integer] | NDArray[np.bool_]) -> Float:
    A = np.asarray(A)
    if A.ndim != 2:
        raise ProjectionError(f"{name} must be a 2-d array, got {A.ndim}-d")
    A = A.astype(np.float64, copy=False)
    if not np.isfinite(A).all():
        raise ProjectionError(f"{name} contains NaN or infinite values")
    return A


def _whitener(C: Float, reg: float) -> tuple[Float, float]:
    """Lower Cholesky factor L of C + λI with λ = reg · mean variance."""
    from scipy import linalg  # imported when fitting: loading a fitted projection needs only numpy

    p = C.shape[0]
    lam = reg * float(np.trace(C)) / p
    if lam <= 0.0:
        lam = 1e-12
    try:
        return linalg.cholesky(C + lam * np.eye(p), lower=True), lam
    except linalg.LinAlgError as exc:
        raise ProjectionError(f"covariance is singular with regularization {reg}; increase it") from exc


def _fix_signs(Wx: Float, Wy: Float) -> None:
    """Deterministic signs: the largest-magnitude entry of each image direction is positive."""
    rows = np.argmax(np.abs(Wx), axis=0)
    signs = np.sign(Wx[rows, np.arange(Wx.shape[1])])
    signs[signs == 0] = 1.0
    Wx *= signs
    Wy *= signs


@dataclass
class CCAStatistics:
    """Sufficient statistics of two views, in float64: n, Σx, Σy, XᵀX, XᵀY, YᵀY. Mergeable with ``+``."""

    n: int
    sum_x: Float
    sum_y: Float
    xx: Float
    xy: Float
    yy: Float

    @classmethod
    def empty(cls, p: int, q: int) -> CCAStatistics:
        return cls(0, np.zeros(p), np.zeros(q), np.zeros((p, p)), np.zeros((p, q)), np.zeros((q, q)))

    @classmethod
    def of(cls, X: NDArray[np.floating], Y: NDArray[np.floating]) -> CCAStatistics:
        stats = cls.empty(X.shape[1], Y.shape[1])
        stats.update(X, Y)
        return stats

    def update(self, X: NDArray[np.floating], Y: NDArray[np.floating]) -> None:
        """Add a chunk of paired rows."""
        X64 = _check_matrix("X", X)
        Y64 = _check_matrix("Y", Y)
        if X64.shape[0] != Y64.shape[0]:
            raise ProjectionError(f"X and Y must have the same number of rows, got {X64.shape[0]} and {Y64.shape[0]}")
        if X64.shape[1] != self.sum_x.shape[0] or Y64.shape[1] != self.sum_y.shape[0]:
            raise ProjectionError(
                f"chunk widths ({X64.shape[1]}, {Y64.shape[1]}) differ from ({self.sum_x.shape[0]}, {self.sum_y.shape[0]})"
            )
        self.n += X64.shape[0]
        self.sum_x += X64.sum(axis=0)
        self.sum_y += Y64.sum(axis=0)
        self.xx += X64.T @ X64
        self.xy += X64.T @ Y64
        self.yy += Y64.T @ Y64

    def __add__(self, other: CCAStatistics) -> CCAStatistics:
        return CCAStatistics(
            self.n + other.n,
            self.sum_x + other.sum_x,
            self.sum_y + other.sum_y,
            self.xx + other.xx,
            self.xy + other.xy,
            self.yy + other.yy,
        )

    def __sub__(self, other: CCAStatistics) -> CCAStatistics:
        """Take rows out again (images removed from a corpus)."""
        return CCAStatistics(
            self.n - other.n,
            self.sum_x - other.sum_x,
            self.sum_y - other.sum_y,
            self.xx - other.xx,
            self.xy - other.xy,
            self.yy - other.yy,
        )

    def to_arrays(self) -> dict[str, NDArray[np.float64]]:
        return {"n": np.array([self.n], np.int64), "sum_x": self.sum_x, "sum_y": self.sum_y, "xx": self.xx,
                "xy": self.xy, "yy": self.yy}

    @classmethod
    def from_arrays(cls, arrays: dict[str, NDArray[Any]]) -> CCAStatistics:
        return cls(int(arrays["n"][0]), *(np.asarray(arrays[k], np.float64) for k in ("sum_x", "sum_y", "xx", "xy", "yy")))

    def covariances(self) -> tuple[Float, Float, Float, Float, Float]:
        """μx, μy, C_xx, C_yy, C_xy (maximum-likelihood, divided by n)."""
        if self.n < 2:
            raise ProjectionError(f"CCA needs at least 2 paired samples, got {self.n}")
        mx, my = self.sum_x / self.n, self.sum_y / self.n
        Cxx = self.xx / self.n - np.outer(mx, mx)
        Cyy = self.yy / self.n - np.outer(my, my)
        Cxy = self.xy / self.n - np.outer(mx, my)
        return mx, my, (Cxx + Cxx.T) / 2, (Cyy + Cyy.T) / 2, Cxy


class LinearCCA:
    """Regularized linear CCA.

    Parameters
    ----------
    n_components : number of canonical directions l (None: min(p, q)).
    reg_x, reg_y : ridge on each view's covariance, relative to its mean variance (λ = reg · tr(C) / p).

    Fitted attributes: ``x_mean_`` (μx), ``y_mean_`` (μy), ``x_weights_`` (W_x, p × l), ``y_weights_``
    (W_y, q × l), ``canonical_correlations_`` (η, descending, in [0, 1]), ``n_samples_``.
    """

    def __init__(self, n_components: int | None = None, reg_x: float = 1e-3, reg_y: float = 1e-3) -> None:
        self.n_components = n_components
        self.reg_x = reg_x
        self.reg_y = reg_y

    def fit(self, X: NDArray[np.floating], Y: NDArray[np.floating]) -> LinearCCA:
        return self.fit_statistics(CCAStatistics.of(X, Y))

    def fit_statistics(self, stats: CCAStatistics) -> LinearCCA:
        """Fit from sufficient statistics (in-memory, streamed or merged from shards)."""
        from scipy import linalg

        if self.reg_x < 0 or self.reg_y < 0:
            raise ProjectionError(f"regularization must be >= 0, got reg_x={self.reg_x}, reg_y={self.reg_y}")
        mx, my, Cxx, Cyy, Cxy = stats.covariances()
        p, q = Cxy.shape
        upper = min(p, q)
        k = upper if self.n_components is None else int(self.n_components)
        if not 1 <= k <= upper:
            raise ProjectionError(f"n_components must be in [1, min(p, q) = {upper}], got {k}")
        Lx, _ = _whitener(Cxx, self.reg_x)
        Ly, _ = _whitener(Cyy, self.reg_y)
        # M = L_x⁻¹ C_xy L_y⁻ᵀ, the cross-covariance of the whitened views
        M = linalg.solve_triangular(Lx, Cxy, lower=True)
        M = linalg.solve_triangular(Ly, M.T, lower=True).T
        U, S, Vt = linalg.svd(M, full_matrices=False)
        Wx = linalg.solve_triangular(Lx.T, U[:, :k], lower=False)  # W_x, Eq. 2
        Wy = linalg.solve_triangular(Ly.T, Vt[:k].T, lower=False)  # W_y
        _fix_signs(Wx, Wy)
        self.x_mean_, self.y_mean_ = mx, my
        self.x_weights_, self.y_weights_ = Wx, Wy
        self.canonical_correlations_ = np.clip(S[:k], 0.0, 1.0)
        self.n_samples_ = stats.n
        return self

    def fit_transform(self, X: NDArray[np.floating], Y: NDArray[np.floating]) -> NDArray[np.float32]:
        """Fit, then return the training images in the shared space."""
        return self.fit(X, Y).transform(X)

    def _check_fitted(self) -> None:
        if not hasattr(self, "x_weights_"):
            raise ProjectionError("LinearCCA is not fitted; call fit first")

    def transform(self, X: NDArray[np.floating]) -> NDArray[np.float32]:
        """T = (X − μx) W_x: images into the shared space."""
        self._check_fitted()
        X64 = _check_matrix("X", X)
        if X64.shape[1] != self.x_weights_.shape[0]:
            raise ProjectionError(f"X must have {self.x_weights_.shape[0]} columns, got {X64.shape[1]}")
        return ((X64 - self.x_mean_) @ self.x_weights_).astype(np.float32)

    def transform_y(self, Y: NDArray[np.floating]) -> NDArray[np.float32]:
        """(Y − μy) W_y: text vectors (tags, words) into the shared space."""
        self._check_fitted()
        Y64 = _check_matrix("Y", Y)
        if Y64.shape[1] != self.y_weights_.shape[0]:
            raise ProjectionError(f"Y must have {self.y_weights_.shape[0]} columns, got {Y64.shape[1]}")
        return ((Y64 - self.y_mean_) @ self.y_weights_).astype(np.float32)

    # -- persistence -----------------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, NDArray[np.float64]]:
        self._check_fitted()
        return {
            "x_mean": self.x_mean_,
            "y_mean": self.y_mean_,
            "x_weights": self.x_weights_,
            "y_weights": self.y_weights_,
            "canonical_correlations": self.canonical_correlations_,
            "params": np.array([self.n_components or 0, self.reg_x, self.reg_y, self.n_samples_], np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, NDArray[np.float64]], source: Path | str = "projection") -> LinearCCA:
        try:
            n_components, reg_x, reg_y, n_samples = arrays["params"]
            model = cls(int(n_components) or None, float(reg_x), float(reg_y))
            model.x_mean_, model.y_mean_ = arrays["x_mean"], arrays["y_mean"]
            model.x_weights_, model.y_weights_ = arrays["x_weights"], arrays["y_weights"]
            model.canonical_correlations_ = arrays["canonical_correlations"]
            model.n_samples_ = int(n_samples)
        except (KeyError, ValueError) as exc:
            raise ProjectionError(f"{source}: not a LinearCCA model ({exc})") from exc
        return model
