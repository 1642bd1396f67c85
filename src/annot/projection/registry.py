"""Projections by kind, as the settings name them: building one from its settings, loading a fitted one."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from annot.errors import ProjectionError
from annot.projection.cca import LinearCCA
from annot.projection.kcca import KernelCCA
from annot.settings import ProjectionKind, ProjectionSettings


class Projection(Protocol):
    canonical_correlations_: NDArray[np.float64]

    def fit(self, X: NDArray[np.floating], Y: NDArray[np.floating]) -> Projection: ...

    def transform(self, X: NDArray[np.floating]) -> NDArray[np.float32]: ...

    def transform_y(self, Y: NDArray[np.floating]) -> NDArray[np.float32]: ...

    def to_arrays(self) -> dict[str, NDArray[np.float64]]: ...


def build_projection(settings: ProjectionSettings, *, exact: bool = False) -> LinearCCA | KernelCCA:
    """An unfitted projection. KCCA maps negative features to [x⁺, x⁻] (see annot.projection.kcca) and takes a
    linear or Gaussian kernel on the text view (annot.projection.text_kernel); ``exact`` forces exact KCCA."""
    if settings.kind is ProjectionKind.LINEAR:
        return linear_cca(settings)
    return KernelCCA(settings.n_components, settings.reg, settings.reg,
                     n_landmarks=None if exact else settings.n_landmarks, negative="split",
                     gamma_scale=settings.gamma_scale, text_kernel=settings.text_kernel.value,
                     text_gamma_scale=settings.text_gamma_scale)


def linear_cca(settings: ProjectionSettings) -> LinearCCA:
    """An unfitted linear CCA with the store's settings (what statistics are fitted with: ``annot index`` streaming,
    ``refit``, corrections)."""
    return LinearCCA(settings.n_components, settings.reg, settings.reg)


def load_projection(kind: ProjectionKind | str, arrays: dict[str, NDArray[np.float64]], source: Path) -> LinearCCA | KernelCCA:
    if kind == ProjectionKind.LINEAR:
        return LinearCCA.from_arrays(arrays, source)
    if kind == ProjectionKind.KCCA:
        return KernelCCA.from_arrays(arrays, source)
    raise ProjectionError(f"{source}: unknown projection kind {kind!r}")
