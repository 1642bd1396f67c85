"""Regularized kernel CCA with a χ² kernel on the image view (paper §3.4, Eq. 3; Hardoon et al. 2004).

KCCA looks for directions w_x = Σ_i α_i φ(x_i) in the feature space of a kernel k. We solve it through the
empirical kernel map: with K = V Λ Vᵀ the eigendecomposition of the kernel matrix of m landmark images, every image
gets the coordinates φ(x) = k(x, landmarks) V Λ^(-1/2) (so that φ(x_i)ᵀφ(x_j) = K_ij on the landmarks), and
regularized linear CCA on (φ(X), Y) is regularized KCCA: the ridge on the covariance of φ(X) is Hardoon's κ‖w_x‖²
penalty, and LinearCCA's centring of φ(X) is the centring of the kernel. The text view has a linear kernel by
default (its vectors are W2V means or 0/1 tags already), or a Gaussian one (``text_kernel="rbf"``,
annot.projection.text_kernel), mapped the same way over the same landmarks' texts.

- **Exact** (``n_landmarks=None``): the landmarks are all n training images; memory grows as n² and time as n³.
- **Nyström** (``n_landmarks=m``): m training images chosen at random; cost linear in n (scikit-learn's
  ``Nystroem`` builds the map). As m → n it becomes the exact solution.

The χ² kernel is k(x, y) = exp(−γ Σ_d (x_d − y_d)² / (x_d + y_d)) and needs non-negative inputs. CNN features can
be negative (EfficientNet's swish activation, or a signed power normalisation), so the choice is explicit:
``negative="error"`` (default) refuses them at fit time, ``negative="split"`` maps every feature to its positive and
negative parts [max(x, 0), max(−x, 0)], which loses nothing and leaves non-negative features unchanged (plus zeros).
With "error", negative values met later, at transform time, are clipped to 0. γ defaults to
``gamma_scale`` / (mean χ² distance between training images), estimated on a sample (``gamma_scale`` 1: the usual
choice; larger is a narrower kernel, chosen by cross-validation).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from annot.errors import ProjectionError
from annot.projection.cca import CCAStatistics, LinearCCA, _check_matrix
from annot.projection.kernels import kernel_map, mean_sampled_distance
from annot.projection.text_kernel import TextMap, check_text_kernel

NEGATIVE_MODES = ("error", "split")
EXACT_LIMIT = 5000  # above this many training images ``auto`` switches to Nyström
CHUNK = 4096  # rows of X read at a time


def chi2_input(X: NDArray[np.floating], negative: str) -> NDArray[np.float64]:
    """Make features valid χ² inputs according to ``negative`` ("error" or "split")."""
    Z = np.asarray(X, np.float64)
    if negative == "split":
        return np.hstack([np.maximum(Z, 0.0), np.maximum(-Z, 0.0)])
    if negative == "error":
        if (Z < 0).any():
            raise ProjectionError(
                f"the χ² kernel needs non-negative features, found {int((Z < 0).sum())} negative values "
                '(use negative="split" to map x to [max(x, 0), max(-x, 0)])'
            )
        return Z
    raise ProjectionError(f"negative must be one of {NEGATIVE_MODES}, got {negative!r}")


def chi2_kernel(A: NDArray[np.float64], B: NDArray[np.float64], gamma: float, chunk: int = 256) -> NDArray[np.float64]:
    """exp(−γ χ²(a, b)) for every row pair: scikit-learn's implementation, in row chunks on every core."""
    from sklearn.metrics.pairwise import chi2_kernel as sk_chi2

    out = np.empty((len(A), len(B)), np.float64)

    def fill(lo: int) -> None:
        out[lo : lo + chunk] = sk_chi2(A[lo : lo + chunk], B, gamma=gamma)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(fill, range(0, len(A), chunk)))
    return out


def default_gamma(X: NDArray[np.float64], seed: int = 0, sample: int = 300) -> float:
    """1 / mean χ² distance between sampled training images."""
    from sklearn.metrics.pairwise import additive_chi2_kernel  # = −Σ (x − y)² / (x + y)

    return 1.0 / mean_sampled_distance(X, lambda S: -additive_chi2_kernel(S, S), seed, sample)


class KernelCCA:
    """Regularized KCCA with a χ² kernel on the image view, exact or by Nyström landmarks.

    Parameters
    ----------
    n_components : canonical directions l (None: as many as the rank allows).
    reg_x, reg_y : ridges, relative to the mean variance of each view's (mapped) features.
    n_landmarks : None for exact KCCA (all training images), an int for Nyström, "auto" for exact up to
        ``EXACT_LIMIT`` training images and 2,000 landmarks above.
    gamma : χ² kernel width (None: ``gamma_scale`` / mean χ² distance).
    negative : "error" or "split" (see the module text).
    gamma_scale : multiplies the default γ when ``gamma`` is None.
    text_kernel : "linear" (the text view as it is) or "rbf" (a Gaussian kernel on it; annot.projection.text_kernel).
    text_gamma_scale : the Gaussian text kernel's γ_y as a multiple of 1 / (mean squared distance between texts).

    Fitted: ``landmarks_`` (m × p'), ``map_`` (m × r, V Λ^(-1/2)), ``gamma_``, ``cca_`` (the LinearCCA on the
    mapped features), ``canonical_correlations_``.
    """

    def __init__(
        self,
        n_components: int | None = None,
        reg_x: float = 0.1,
        reg_y: float = 0.1,
        n_landmarks: int | str | None = "auto",
        gamma: float | None = None,
        negative: str = "error",
        seed: int = 0,
        gamma_scale: float = 1.0,
        text_kernel: str = "linear",
        text_gamma_scale: float = 1.0,
    ) -> None:
        if not gamma_scale > 0:
            raise ProjectionError(f"gamma_scale must be > 0, got {gamma_scale}")
        check_text_kernel(text_kernel, text_gamma_scale)
        self.text_kernel = text_kernel
        self.text_gamma_scale = text_gamma_scale
        self.n_components = n_components
        self.reg_x = reg_x
        self.reg_y = reg_y
        self.n_landmarks = n_landmarks
        self.gamma = gamma
        self.negative = negative
        self.seed = seed
        self.gamma_scale = gamma_scale

    def _landmark_count(self, n: int) -> int:
        if self.n_landmarks is None:
            return n
        if self.n_landmarks == "auto":
            return n if n <= EXACT_LIMIT else 2000
        m = int(self.n_landmarks)
        if m < 2:
            raise ProjectionError(f"n_landmarks must be >= 2, got {m}")
        return min(m, n)

    def _landmark_ids(self, n: int, m: int) -> NDArray[np.int64]:
        """The training rows that serve as landmarks, for the image kernel and the text kernel alike."""
        if m == n:
            return np.arange(n)
        return np.sort(np.random.default_rng(self.seed).choice(n, size=m, replace=False))

    def fit(self, X: NDArray[np.floating], Y: NDArray[np.floating]) -> KernelCCA:
        """Fit on X (n × p; a memory-mapped array works: it is read in chunks) and Y (n × q)."""
        Y64 = _check_matrix("Y", Y)
        if np.ndim(X) != 2:
            raise ProjectionError(f"X must be a 2-d array, got {np.ndim(X)}-d")
        n = X.shape[0]
        if n < 2:
            raise ProjectionError(f"KCCA needs at least 2 training images, got {n}")
        if Y64.shape[0] != n:
            raise ProjectionError(f"X and Y must have the same number of rows, got {n} and {Y64.shape[0]}")
        for lo in range(0, n, CHUNK):  # every chunk valid before any work
            chi2_input(_check_matrix("X", X[lo : lo + CHUNK]), self.negative)
        m = self._landmark_count(n)
        chosen = self._landmark_ids(n, m)
        landmarks = chi2_input(np.asarray(X[chosen], np.float64), self.negative)
        gamma = float(self.gamma) if self.gamma is not None else self.gamma_scale * default_gamma(landmarks, self.seed)
        K_ll = chi2_kernel(landmarks, landmarks, gamma)
        text = self.fit_text(Y64[chosen])
        if m == n:
            return self.fit_exact(landmarks, gamma, kernel_map(K_ll), Y64, text)
        chunks = (
            chi2_kernel(chi2_input(np.asarray(X[lo : lo + CHUNK], np.float64), self.negative), landmarks, gamma)
            for lo in range(0, n, CHUNK)
        )
        return self.fit_kernels(landmarks, gamma, K_ll, chunks, Y64, text)

    def fit_text(self, landmark_texts: NDArray[np.floating]) -> TextMap | None:
        """The Gaussian text kernel's map over the landmarks' text views (None for a linear text kernel).
        Cross-validation computes it once per fold and passes it to every ridge's fit."""
        if self.text_kernel == "linear":
            return None
        return TextMap.fit(landmark_texts, self.text_gamma_scale, self.seed)

    def fit_kernels(
        self,
        landmarks: NDArray[np.float64],
        gamma: float,
        K_ll: NDArray[np.float64],
        K_nl: Iterable[NDArray[np.float64]],
        Y: NDArray[np.float64],
        text: TextMap | None = None,
    ) -> KernelCCA:
        """Fit from precomputed kernels: K_ll among the landmarks, K_nl (training × landmarks, in row chunks that
        follow Y's rows). Cross-validation uses this to compute the kernel of a corpus once for every fold."""
        return self.fit_map(landmarks, gamma, kernel_map(K_ll), K_nl, Y, text=text)

    def fit_exact(
        self,
        landmarks: NDArray[np.float64],
        gamma: float,
        eigen: tuple[NDArray[np.float64], NDArray[np.float64]],
        Y: NDArray[np.floating],
        text: TextMap | None = None,
    ) -> KernelCCA:
        """Exact KCCA (the landmarks are the training images, Y's rows) from their kernel's map: the training images'
        φ rows are K V Λ^(-1/2) = V Λ^(1/2), so no kernel product is needed. Cross-validation shares one ``eigen``
        (and one text map) across ridges."""
        return self.fit_map(landmarks, gamma, eigen, [eigen[1] * eigen[0]], Y, mapped=True, text=text)

    def fit_map(
        self,
        landmarks: NDArray[np.float64],
        gamma: float,
        eigen: tuple[NDArray[np.float64], NDArray[np.float64]],
        K_nl: Iterable[NDArray[np.float64]],
        Y: NDArray[np.floating],
        mapped: bool = False,
        text: TextMap | None = None,
    ) -> KernelCCA:
        """Fit from the landmark kernel's map (``kernel_map(K_ll)``), so several ridges can share one
        eigendecomposition. With ``mapped`` the chunks are already φ rows (k(x, landmarks) V Λ^(-1/2)). With a
        Gaussian text kernel, ``text`` is its map (``fit_text``; fitted here on the landmarks' rows of Y if None)."""
        eigenvalues, mapping = eigen
        rank = len(eigenvalues)
        exact = len(landmarks) == len(Y)
        text_rows = None  # the training texts' ψ rows, when the text landmarks are all of them (exact KCCA)
        if self.text_kernel == "rbf":
            if text is None:
                ids = self._landmark_ids(len(Y), len(landmarks))
                text = TextMap.fit(np.asarray(Y, np.float64)[ids], self.text_gamma_scale, self.seed)
            if exact and len(text.landmarks) == len(Y):
                text_rows = text.landmark_rows()
        self.text_ = text if self.text_kernel == "rbf" else None
        q = self.text_.width if self.text_ is not None else Y.shape[1]
        upper = min(rank, q)
        if self.n_components is not None and not 1 <= self.n_components <= upper:
            raise ProjectionError(f"n_components must be in [1, min(kernel rank, q) = {upper}], got {self.n_components}")
        self.landmarks_, self.gamma_ = landmarks, float(gamma)
        self.map_ = mapping  # φ(x) = k(x, landmarks) V Λ^(-1/2)
        self.eigenvalues_ = eigenvalues
        stats = CCAStatistics.empty(rank, q)
        start = 0
        for K in K_nl:
            rows = slice(start, start + len(K))
            Yc: NDArray[np.floating]
            if text_rows is not None:
                Yc = text_rows[rows]
            else:  # ψ of a chunk at a time: a Nyström fit over millions of texts never holds all their rows
                Yc = self.text_.features(Y[rows]) if self.text_ is not None else Y[rows]
            stats.update(K if mapped else K @ self.map_, Yc)
            start += len(K)
        if start != len(Y):
            raise ProjectionError(f"kernel rows ({start}) and Y rows ({len(Y)}) differ")
        self.is_exact_ = exact
        self.cca_ = LinearCCA(self.n_components, self.reg_x, self.reg_y).fit_statistics(stats)
        self.canonical_correlations_ = self.cca_.canonical_correlations_
        self.n_samples_ = len(Y)
        return self

    def fit_transform(self, X: NDArray[np.floating], Y: NDArray[np.floating]) -> NDArray[np.float32]:
        """Fit, then return the training images in the shared space. For exact KCCA the training images' kernel
        map needs no kernel: K V Λ^(-1/2) = V Λ^(1/2) = map_ · Λ."""
        self.fit(X, Y)
        if self.is_exact_:
            return self.cca_.transform(self.map_ * self.eigenvalues_)
        return self.transform(X)

    def _map(self, Xk: NDArray[np.float64]) -> NDArray[np.float64]:
        return chi2_kernel(Xk, self.landmarks_, self.gamma_) @ self.map_

    def kernel_features(self, X: NDArray[np.floating]) -> NDArray[np.float64]:
        """φ(X): the empirical kernel map of new images (read in chunks)."""
        self._check_fitted()
        width = self.landmarks_.shape[1] // (2 if self.negative == "split" else 1)
        if np.ndim(X) != 2 or X.shape[1] != width:
            raise ProjectionError(f"X must have {width} columns, got shape {np.shape(X)}")
        parts = []
        for lo in range(0, X.shape[0], CHUNK):
            chunk = _check_matrix("X", X[lo : lo + CHUNK])
            parts.append(self._map(chi2_input(chunk, "split") if self.negative == "split" else np.maximum(chunk, 0.0)))
        return np.vstack(parts) if parts else np.zeros((0, self.map_.shape[1]))

    def _check_fitted(self) -> None:
        if not hasattr(self, "cca_"):
            raise ProjectionError("KernelCCA is not fitted; call fit first")

    def transform(self, X: NDArray[np.floating]) -> NDArray[np.float32]:
        """Images into the shared space: φ(x) projected by the CCA directions."""
        return self.cca_.transform(self.kernel_features(X))

    def transform_y(self, Y: NDArray[np.floating]) -> NDArray[np.float32]:
        """Text views into the shared space (through the text kernel's map when it is Gaussian)."""
        self._check_fitted()
        return self.cca_.transform_y(self.text_.features(Y) if self.text_ is not None else Y)

    # -- persistence -----------------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, NDArray[np.float64]]:
        self._check_fitted()
        arrays = {f"cca_{k}": v for k, v in self.cca_.to_arrays().items()}
        arrays.update(
            landmarks=self.landmarks_.astype(np.float32),
            kernel_map=self.map_,
            kernel_params=np.array([self.gamma_, 1.0 if self.negative == "split" else 0.0, float(self.is_exact_)]),
        )
        if self.text_ is not None:
            arrays.update(self.text_.to_arrays())
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, NDArray[np.float64]], source: Path | str = "projection") -> KernelCCA:
        try:
            gamma, split, exact = arrays["kernel_params"]
            model = cls(negative="split" if split else "error", gamma=float(gamma))
            model.cca_ = LinearCCA.from_arrays({k[4:]: v for k, v in arrays.items() if k.startswith("cca_")}, source)
            model.landmarks_ = np.asarray(arrays["landmarks"], np.float64)
            model.map_ = arrays["kernel_map"]
            model.gamma_, model.is_exact_ = float(gamma), bool(exact)
            model.text_ = TextMap.from_arrays(arrays, source)
            if model.text_ is not None:
                model.text_kernel = "rbf"
            model.canonical_correlations_ = model.cca_.canonical_correlations_
            model.n_samples_ = model.cca_.n_samples_
            model.n_components, model.reg_x, model.reg_y = model.cca_.n_components, model.cca_.reg_x, model.cca_.reg_y
        except (KeyError, ValueError) as exc:
            raise ProjectionError(f"{source}: not a KernelCCA model ({exc})") from exc
        return model
