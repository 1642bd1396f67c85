"""The two views CCA relates, as arrays.

Text view Y of each image (paper §3.2, §4.2): ``w2v``, the mean of its tags' word vectors; ``bv``, its 0/1 tag
vector; ``w2v+bv``, both side by side (useful when the word vectors are short: the CCA space has at most
min(p, q) dimensions, only 50 with GloVe-50 alone).

Image view X: CNN features, optionally normalised before CCA: ``l2`` (unit rows) or ``power`` (signed square
root, then unit rows), the usual normalisations of pooled CNN activations.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

TEXT_VIEWS = ("w2v", "bv", "w2v+bv")
NORMALIZATIONS = ("none", "l2", "power")


def text_view(
    labels: NDArray[np.bool_], E: NDArray[np.float32], has_vector: NDArray[np.bool_], kind: str
) -> NDArray[np.float32]:
    """Y for a (n × V) label matrix. ``E`` (V × q) holds the word vectors, ``has_vector`` marks the known ones.

    W2V rows with no known tag are zero; callers leave such images out of the fit.
    """
    if kind == "bv":
        return labels.astype(np.float32)
    if kind == "w2v":
        known = labels & has_vector[None, :]
        counts = known.sum(axis=1, keepdims=True).astype(np.float32)
        return (known.astype(np.float32) @ E) / np.maximum(counts, 1.0)
    if kind == "w2v+bv":
        return np.hstack([text_view(labels, E, has_vector, "w2v"), labels.astype(np.float32)])
    raise ValueError(f"text view must be one of {TEXT_VIEWS}, got {kind!r}")


def word_view(E: NDArray[np.float32], kind: str) -> NDArray[np.float32]:
    """The text view of each single vocabulary word (a one-tag image), to project the vocabulary: Z = E W_y."""
    eye = np.eye(E.shape[0], dtype=np.float32)
    if kind == "bv":
        return eye
    if kind == "w2v":
        return E.astype(np.float32)
    if kind == "w2v+bv":
        return np.hstack([E.astype(np.float32), eye])
    raise ValueError(f"text view must be one of {TEXT_VIEWS}, got {kind!r}")


def usable_rows(labels: NDArray[np.bool_], has_vector: NDArray[np.bool_], kind: str) -> NDArray[np.bool_]:
    """Images that carry at least one tag the text view can represent."""
    if kind == "w2v":
        return np.asarray((labels & has_vector[None, :]).any(axis=1), np.bool_)
    return np.asarray(labels.any(axis=1), np.bool_)


def normalize_features(X: NDArray[np.floating], kind: str) -> NDArray[np.float32]:
    """Apply the image-feature normalisation ``kind`` row by row."""
    if kind not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {kind!r}")
    X = np.asarray(X, np.float32)
    if kind == "none":
        return X
    if kind == "power":
        X = np.sign(X) * np.sqrt(np.abs(X))
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
