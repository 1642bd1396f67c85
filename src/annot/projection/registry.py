"""Projections by name, as the store's manifest records them: building one from settings, loading a fitted one."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from annot.errors import ProjectionError
from annot.projection.cca import LinearCCA
from annot.projection.kcca import KernelCCA

PROJECTIONS = ("linear-cca", "kcca")


class Projection(Protocol):
    canonical_correlations_: NDArray[np.float64]

    def fit(self, X: NDArray[np.floating], Y: NDArray[np.floating]) -> Projection: ...

    def transform(self, X: NDArray[np.floating]) -> NDArray[np.float32]: ...

    def transform_y(self, Y: NDArray[np.floating]) -> NDArray[np.float32]: ...

    def to_arrays(self) -> dict[str, NDArray[np.float64]]: ...


def parse_landmarks(value: str | int | None) -> int | str | None:
    """``auto``, ``all`` (exact KCCA) or a number of Nyström landmarks."""
    if value is None or value == "all":
        return None
    if value == "auto":
        return "auto"
    try:
        m = int(value)
    except (TypeError, ValueError) as exc:
        raise ProjectionError(f"landmarks must be auto, all or a number, got {value!r}") from exc
    if m < 2:
        raise ProjectionError(f"landmarks must be >= 2, got {m}")
    return m


def build_projection(
    kind: str, n_components: int | None, reg_x: float, reg_y: float, landmarks: str | int | None = "auto",
    gamma_scale: float = 1.0,
) -> LinearCCA | KernelCCA:
    """An unfitted projection. KCCA maps negative features to [x⁺, x⁻] (see annot.projection.kcca)."""
    if kind == "linear-cca":
        return LinearCCA(n_components, reg_x, reg_y)
    if kind == "kcca":
        return KernelCCA(n_components, reg_x, reg_y, n_landmarks=parse_landmarks(landmarks), negative="split",
                         gamma_scale=gamma_scale)
    raise ProjectionError(f"projection must be one of {', '.join(PROJECTIONS)}, got {kind!r}")


def load_projection(kind: str, arrays: dict[str, NDArray[np.float64]], source: Path) -> LinearCCA | KernelCCA:
    if kind == "linear-cca":
        return LinearCCA.from_arrays(arrays, source)
    if kind == "kcca":
        return KernelCCA.from_arrays(arrays, source)
    raise ProjectionError(f"{source}: unknown projection kind {kind!r}")
