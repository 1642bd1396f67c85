"""Projections by name, as the store's manifest records them: building one from settings, loading a fitted one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from annot.errors import ProjectionError
from annot.projection.cca import LinearCCA
from annot.projection.kcca import KernelCCA

PROJECTIONS = ("linear-cca", "kcca")
SPACES = ("image", "text", "both")


class Projection(Protocol):
    canonical_correlations_: NDArray[np.float64]

    def fit(self, X: NDArray[np.floating], Y: NDArray[np.floating]) -> Projection: ...

    def transform(self, X: NDArray[np.floating]) -> NDArray[np.float32]: ...

    def transform_y(self, Y: NDArray[np.floating]) -> NDArray[np.float32]: ...

    def to_arrays(self) -> dict[str, NDArray[np.float64]]: ...


def space_rows(
    U: NDArray[np.floating], V: NDArray[np.floating] | Callable[[], NDArray[np.floating]], space: str
) -> NDArray[np.float32]:
    """The training images' rows in the shared space, the rows a query's projection T is compared with (paper
    §3.4.1). ``image``: their image projections U. ``text``: the projections V of their text views, as the paper
    words it ("compute the correlation distance of T to V"). ``both``: the mean of the two correlation rows, so that a
    query's similarity to an image is the mean of its correlations with that image's U and V. ``V`` may be a
    function giving V, called only when the space reads it (``image`` never does)."""
    from annot.retrieval.indexes import correlation_rows

    if space == "image":
        return correlation_rows(U)
    if space not in SPACES:
        raise ProjectionError(f"space must be one of {', '.join(SPACES)}, got {space!r}")
    text_rows = correlation_rows(V() if callable(V) else V)
    return text_rows if space == "text" else (correlation_rows(U) + text_rows) / np.float32(2)


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
    gamma_scale: float = 1.0, text_kernel: str = "linear", text_gamma_scale: float = 1.0,
) -> LinearCCA | KernelCCA:
    """An unfitted projection. KCCA maps negative features to [x⁺, x⁻] (see annot.projection.kcca) and takes a
    linear or Gaussian kernel on the text view (annot.projection.text_kernel)."""
    if kind == "linear-cca":
        if text_kernel != "linear":
            raise ProjectionError(f"text_kernel {text_kernel!r} needs kcca; linear CCA's views are linear")
        return LinearCCA(n_components, reg_x, reg_y)
    if kind == "kcca":
        return KernelCCA(n_components, reg_x, reg_y, n_landmarks=parse_landmarks(landmarks), negative="split",
                         gamma_scale=gamma_scale, text_kernel=text_kernel, text_gamma_scale=text_gamma_scale)
    raise ProjectionError(f"projection must be one of {', '.join(PROJECTIONS)}, got {kind!r}")


def load_projection(kind: str, arrays: dict[str, NDArray[np.float64]], source: Path) -> LinearCCA | KernelCCA:
    if kind == "linear-cca":
        return LinearCCA.from_arrays(arrays, source)
    if kind == "kcca":
        return KernelCCA.from_arrays(arrays, source)
    raise ProjectionError(f"{source}: unknown projection kind {kind!r}")
