"""Answering from CNN-R's regressed vectors: the nearest words by cosine similarity, from the store's vocabulary or
(open vocabulary) from every word of the word-vector file, each in a FAISS inner-product index.

Cosine is taken after subtracting the mean of the vocabulary's word vectors from both sides. Raw cosine favours
"hub" words near the middle of the vocabulary (GloVe's ocean, sea, snow answer almost every Corel image); centring
removes that pull (Corel-5k, the same trained network: F1 15.5 raw, 19.7 centred; decoding the true mean tag vector:
55.6 raw, 64.2 centred).

The vocabulary is answered in the model's own space (for ``--target whitened``, the whitened word space). The open
vocabulary is answered in the word vectors' own space: the regressed vector is mapped back (w = v A⁻¹ + μ) first.
Whitening by the covariance of a few hundred vocabulary words magnifies the directions in which they barely vary,
and the rare words of a 400,000-word file lie along those directions; in the whitened space they crowd out real
words (Corel-5k, 8 open answers per validation image: "0000", "greenback", "sheng", "lwt" beside "sun"; mapped back:
"sunlight", "winds", "fog", "skies"). On the vocabulary itself the whitened space is better (validation F1 27.6
against 25.5 mapped back), so the two answers of a whitened model may differ; for the paper's raw target they agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from annot.errors import EncoderError, StoreError
from annot.features.words import load_word_vectors
from annot.metrics import Summary, per_word_metrics, predictions_matrix, summarize


def _unit(V: NDArray[np.floating]) -> NDArray[np.float32]:
    V = np.asarray(V, np.float32)
    return np.ascontiguousarray(V / np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12), dtype=np.float32)


class WordIndex:
    """Words and their unit vectors in an exact FAISS inner-product index (inner product = cosine)."""

    def __init__(self, words: list[str], vectors: NDArray[np.floating], centre: NDArray[np.floating],
                 queries: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None) -> None:
        """``queries`` = (m, B) maps each query v to v B + m before the look-up (None: queries are in the words'
        space already)."""
        import faiss

        self.words = words
        self.centre = np.asarray(centre, np.float32)
        self.queries = queries
        self.space: tuple[NDArray[np.float64], NDArray[np.float64]] = (np.zeros(vectors.shape[1]), np.eye(vectors.shape[1]))
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        self.index.add(_unit(np.asarray(vectors, np.float32) - self.centre))

    def nearest(self, V: NDArray[np.floating], n: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Centred cosine similarities and word positions of the ``n`` nearest words of each row of V, nearest first."""
        if self.queries is not None:
            V = np.asarray(V, np.float64) @ self.queries[1] + self.queries[0]
        similarity, positions = self.index.search(_unit(np.asarray(V, np.float32) - self.centre), min(n, self.index.ntotal))
        return similarity, positions.astype(np.int64)


def word_index(vocabulary: list[str] | tuple[str, ...], E: NDArray[np.floating],
               has_vector: NDArray[np.bool_]) -> tuple[WordIndex, NDArray[np.int64]]:
    """The vocabulary words that have vectors (rows of E, in the model's space), centred on their mean; and their
    vocabulary positions."""
    positions = np.flatnonzero(has_vector).astype(np.int64)
    return WordIndex([vocabulary[i] for i in positions], E[positions], E[positions].mean(axis=0)), positions


def answer_quality(index: WordIndex, positions: NDArray[np.int64], V: NDArray[np.floating],
                   truth: NDArray[np.bool_], n_tags: int = 5) -> Summary:
    """Per-word P / R / F1 / N+ of answering each row of V with its ``n_tags`` nearest vocabulary words (as
    ``annot eval --method cnn-r`` does), against ``truth`` (rows of V × vocabulary)."""
    _, nearest = index.nearest(V, n_tags)
    predicted = predictions_matrix([positions[row] for row in nearest], truth.shape[1])
    return summarize(per_word_metrics(truth, predicted), len(truth))


def vocabulary_index(saved: dict[str, Any], model_file: Path, vocabulary: list[str]) -> tuple[WordIndex, NDArray[np.int64]]:
    """The store's vocabulary words that have vectors, as saved with the model (``saved``: the model file's
    contents); and their vocabulary positions."""
    try:
        words, E, has_vector = list(saved["vocabulary"]), np.asarray(saved["E"]), np.asarray(saved["has_vector"], bool)
    except KeyError as exc:
        raise EncoderError(f"{model_file}: not a usable CNN-R model ({exc})") from exc
    if words != list(vocabulary):
        raise StoreError(f"{model_file}: trained for another vocabulary than the store's; run `annot train-cnnr` again")
    index, positions = word_index(words, E, has_vector)
    q = E.shape[1]  # how the model maps word vectors into its space (models before targets existed: raw)
    index.space = (np.asarray(saved.get("word_mean", np.zeros(q))), np.asarray(saved.get("word_transform", np.eye(q))))
    return index, positions


def open_vocabulary_index(source: str, like: WordIndex) -> WordIndex:
    """Every word of the word-vector file (GloVe-50: 400,000 words) in the word vectors' own space, centred on the
    vocabulary's mean vector; queries in the model's space (that of the vocabulary index ``like``) are mapped back
    to it."""
    words, vectors = load_word_vectors(source).open_vocabulary()
    mean, transform = like.space
    back = np.linalg.pinv(transform).astype(np.float64)
    return WordIndex(words, vectors, like.centre.astype(np.float64) @ back + mean, queries=(mean, back))
