"""Annotation metrics (pure numpy): per-word precision and recall, their means over all words, F1 and N+.

The protocol of the literature (Duygulu et al. 2002; TagProp; 2PKNN; the paper): every test image gets a fixed
number of words (5); for each vocabulary word, precision = correct / predicted (0 when never predicted) and
recall = correct / in truth. P and R are means over all vocabulary words; F1 = 2PR / (P + R) from those means;
N+ counts words with recall > 0. A word with no test truth has no defined recall: it is left out of both means,
and the summary says how many were left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class WordMetrics:
    """Per-word counts and rates, arrays of length V. ``recall`` is NaN for words with no truth."""

    n_truth: NDArray[np.int64]
    n_predicted: NDArray[np.int64]
    n_correct: NDArray[np.int64]
    precision: NDArray[np.float64]
    recall: NDArray[np.float64]
    f1: NDArray[np.float64]


@dataclass(frozen=True)
class Summary:
    precision: float
    recall: float
    f1: float
    n_plus: int
    n_words: int
    n_words_without_truth: int
    n_images: int

    def as_percent(self) -> dict[str, float | int]:
        return {
            "P": round(100 * self.precision, 2),
            "R": round(100 * self.recall, 2),
            "F1": round(100 * self.f1, 2),
            "N+": self.n_plus,
            "words": self.n_words,
            "words_without_truth": self.n_words_without_truth,
            "images": self.n_images,
        }


def per_word_metrics(truth: NDArray[np.bool_], predicted: NDArray[np.bool_]) -> WordMetrics:
    """Counts and rates per word from (n_images × V) 0/1 truth and prediction matrices."""
    truth = np.asarray(truth, bool)
    predicted = np.asarray(predicted, bool)
    if truth.shape != predicted.shape:
        raise ValueError(f"truth and predicted must have the same shape, got {truth.shape} and {predicted.shape}")
    n_truth = truth.sum(axis=0).astype(np.int64)
    n_predicted = predicted.sum(axis=0).astype(np.int64)
    n_correct = (truth & predicted).sum(axis=0).astype(np.int64)
    precision = np.divide(n_correct, n_predicted, out=np.zeros(len(n_truth)), where=n_predicted > 0)
    recall = np.divide(n_correct, n_truth, out=np.full(len(n_truth), np.nan), where=n_truth > 0)
    r0 = np.nan_to_num(recall)
    f1 = np.divide(2 * precision * r0, precision + r0, out=np.zeros(len(n_truth)), where=(precision + r0) > 0)
    return WordMetrics(n_truth, n_predicted, n_correct, precision, recall, f1)


def summarize(metrics: WordMetrics, n_images: int = 0) -> Summary:
    """Mean P and R over the words that have test truth, F1 from those means, and N+."""
    defined = metrics.n_truth > 0
    n_defined = int(defined.sum())
    precision = float(metrics.precision[defined].mean()) if n_defined else 0.0
    recall = float(metrics.recall[defined].mean()) if n_defined else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    n_plus = int((metrics.n_correct[defined] > 0).sum())
    return Summary(precision, recall, f1, n_plus, n_defined, int((~defined).sum()), n_images)


def predictions_matrix(word_lists: list[NDArray[np.int64]], n_words: int) -> NDArray[np.bool_]:
    """0/1 (n_images × V) matrix from each image's predicted word positions."""
    out = np.zeros((len(word_lists), n_words), bool)
    for i, words in enumerate(word_lists):
        out[i, np.asarray(words, np.int64)] = True
    return out
