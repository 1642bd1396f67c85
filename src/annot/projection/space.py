"""Rows of the shared space as the image index holds them: correlation rows (paper §3.4.1), and which side of the
training images a query is compared with."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from annot.errors import ProjectionError


def correlation_rows(V: NDArray[np.floating]) -> NDArray[np.float32]:
    """Centre each row by its own mean and scale it to unit length (zero rows stay zero): then the paper's
    correlation distance D(a, b) = 1 − corr(a, b) is 1 − the rows' inner product."""
    C = np.asarray(V, np.float32) - np.asarray(V, np.float32).mean(axis=1, keepdims=True)
    norms = np.linalg.norm(C, axis=1, keepdims=True)
    return np.ascontiguousarray(C / np.maximum(norms, 1e-12), dtype=np.float32)


def space_rows(
    U: NDArray[np.floating], V: NDArray[np.floating] | Callable[[], NDArray[np.floating]], space: str
) -> NDArray[np.float32]:
    """The training images' rows in the shared space, the rows a query's projection T is compared with (paper
    §3.4.1). ``image``: their image projections U. ``text``: the projections V of their text views, as the paper
    words it ("compute the correlation distance of T to V"). ``both``: the mean of the two correlation rows, so that a
    query's similarity to an image is the mean of its correlations with that image's U and V. ``V`` may be a
    function giving V, called only when the space reads it (``image`` never does)."""
    if space == "image":
        return correlation_rows(U)
    if space not in ("text", "both"):
        raise ProjectionError(f"space must be one of image, text, both, got {space!r}")
    text_rows = correlation_rows(V() if callable(V) else V)
    return text_rows if space == "text" else (correlation_rows(U) + text_rows) / np.float32(2)
