"""A Gaussian kernel on KCCA's text view (paper §3.4: a kernel on each view; the issue: "a kernel of choice on the
text view").

With a linear text kernel the shared space has at most q dimensions, the text view's width: 50 for the W2V mean of
50-d GloVe vectors. A Gaussian kernel k(y, y') = exp(−γ_y ‖y − y'‖²) on the text view lifts that cap (its rank is
the number of distinct text views) and lets KCCA relate the image kernel to non-linear functions of the tags' vectors.
It enters KCCA exactly as the image kernel does, through its empirical kernel map: with K = V Λ Vᵀ over m landmark
texts, ψ(y) = k(y, landmarks) V Λ^(-1/2); the training texts' rows, when they are the landmarks, are V Λ^(1/2).
γ_y is ``gamma_scale`` / (mean squared distance between sampled training texts).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from annot.errors import ProjectionError
from annot.projection.kernels import kernel_map, mean_sampled_distance

TEXT_KERNELS = ("linear", "rbf")
CHUNK = 4096


def check_text_kernel(kind: str, gamma_scale: float) -> None:
    if kind not in TEXT_KERNELS:
        raise ProjectionError(f"text_kernel must be one of {', '.join(TEXT_KERNELS)}, got {kind!r}")
    if not gamma_scale > 0:
        raise ProjectionError(f"text_gamma_scale must be > 0, got {gamma_scale}")


def _squared_distances(S: NDArray[np.float64]) -> NDArray[np.float64]:
    sq = (S * S).sum(axis=1)
    return np.maximum(sq[:, None] + sq[None, :] - 2.0 * S @ S.T, 0.0)


@dataclass
class TextMap:
    """The fitted empirical kernel map of the text view: ψ(y) = k(y, landmarks) · map."""

    landmarks: NDArray[np.float64]  # m × q text views
    gamma: float
    eigenvalues: NDArray[np.float64]  # the kept eigenvalues Λ of the landmark kernel
    map: NDArray[np.float64]  # m × r: V Λ^(-1/2)

    @classmethod
    def fit(cls, landmarks: NDArray[np.floating], gamma_scale: float = 1.0, seed: int = 0) -> TextMap:
        L = np.asarray(landmarks, np.float64)
        if len(L) < 2:
            raise ProjectionError(f"the text kernel needs at least 2 landmark texts, got {len(L)}")
        gamma = gamma_scale / mean_sampled_distance(L, _squared_distances, seed)
        eigenvalues, mapping = kernel_map(_rbf(L, L, gamma))
        return cls(L, gamma, eigenvalues, mapping)

    @property
    def width(self) -> int:
        return int(self.map.shape[1])

    def landmark_rows(self) -> NDArray[np.float64]:
        """ψ of the landmark texts themselves: K V Λ^(-1/2) = V Λ^(1/2), no kernel product needed."""
        return self.map * self.eigenvalues

    def features(self, Y: NDArray[np.floating]) -> NDArray[np.float64]:
        """ψ(Y) for any text views of the landmarks' width, in row chunks."""
        Y64 = np.asarray(Y, np.float64)
        if Y64.ndim != 2 or Y64.shape[1] != self.landmarks.shape[1]:
            raise ProjectionError(f"Y must have {self.landmarks.shape[1]} columns, got shape {np.shape(Y)}")
        parts = [_rbf(Y64[lo : lo + CHUNK], self.landmarks, self.gamma) @ self.map for lo in range(0, len(Y64), CHUNK)]
        return np.vstack(parts) if parts else np.zeros((0, self.width))

    def to_arrays(self) -> dict[str, NDArray[np.float64]]:
        return {"text_landmarks": self.landmarks.astype(np.float32), "text_map": self.map,
                "text_eigenvalues": self.eigenvalues, "text_params": np.array([self.gamma])}

    @classmethod
    def from_arrays(cls, arrays: dict[str, NDArray[np.float64]], source: Path | str) -> TextMap | None:
        """The stored map, or None for a model with a linear text kernel (no text arrays)."""
        if "text_map" not in arrays:
            return None
        try:
            return cls(np.asarray(arrays["text_landmarks"], np.float64), float(arrays["text_params"][0]),
                       np.asarray(arrays["text_eigenvalues"]), np.asarray(arrays["text_map"]))
        except (KeyError, IndexError, ValueError) as exc:
            raise ProjectionError(f"{source}: damaged text kernel map ({exc})") from exc


def _rbf(A: NDArray[np.float64], B: NDArray[np.float64], gamma: float) -> NDArray[np.float64]:
    from sklearn.metrics.pairwise import rbf_kernel

    return np.asarray(rbf_kernel(A, B, gamma=gamma), np.float64)
