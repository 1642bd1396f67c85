"""The text view Y of each image (paper §3.2, §4.2): W2V, the mean of its tags' word vectors, or BV, its 0/1 tags."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

TEXT_VIEWS = ("w2v", "bv")


def text_view(labels: NDArray[np.bool_], E: NDArray[np.float32], has_vector: NDArray[np.bool_], kind: str) -> NDArray[np.float32]:
    """Y for a (n × V) label matrix. ``E`` (V × q) holds the word vectors, ``has_vector`` marks the known ones.

    W2V rows with no known tag are zero; callers leave such images out of the fit.
    """
    if kind == "bv":
        return labels.astype(np.float32)
    if kind == "w2v":
        known = labels & has_vector[None, :]
        counts = known.sum(axis=1, keepdims=True).astype(np.float32)
        return (known.astype(np.float32) @ E) / np.maximum(counts, 1.0)
    raise ValueError(f"text view must be one of {TEXT_VIEWS}, got {kind!r}")


def usable_rows(labels: NDArray[np.bool_], has_vector: NDArray[np.bool_], kind: str) -> NDArray[np.bool_]:
    """Images that carry at least one tag the text view can represent."""
    if kind == "w2v":
        return (labels & has_vector[None, :]).any(axis=1)
    return labels.any(axis=1)
