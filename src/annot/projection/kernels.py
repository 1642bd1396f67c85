"""What the two kernels of KCCA share: the empirical kernel map of a landmark kernel and the scale a width is set
against (numpy only)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray


def kernel_map(K_ll: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The empirical kernel map of a landmark kernel K = V Λ Vᵀ: the kept eigenvalues Λ and V Λ^(-1/2), so that
    φ(x) = k(x, landmarks) V Λ^(-1/2). Eigenvalues below 1e-10 of the largest are dropped (the kernel's rank)."""
    eigenvalues, V = np.linalg.eigh(K_ll)
    keep = eigenvalues > max(eigenvalues[-1], 0.0) * 1e-10
    return eigenvalues[keep], V[:, keep] / np.sqrt(eigenvalues[keep])


def mean_sampled_distance(
    X: NDArray[np.float64], pairwise: Callable[[NDArray[np.float64]], NDArray[np.float64]], seed: int = 0,
    sample: int = 300,
) -> float:
    """Mean of ``pairwise(S)`` over the distinct pairs of ``sample`` random rows S of X (1 when it is not positive):
    the scale a kernel width is set against."""
    rng = np.random.default_rng(seed)
    S = X[rng.choice(len(X), size=min(sample, len(X)), replace=False)]
    mean = float(pairwise(S)[np.triu_indices(len(S), 1)].mean()) if len(S) > 1 else 0.0
    return mean if mean > 0 else 1.0
