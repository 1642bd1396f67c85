"""Confidence: the probability that a predicted tag is right, calibrated on images the projection was fitted without.

The store's training images are annotated in cross-validation (:func:`annot.fitting.cv.cross_validate`: each fold's
projection fitted without its held-out images, scored with the store's own scoring settings, the ``POOL`` best words
of each), and each predicted word is marked right or wrong by the image's tags. A logistic curve maps what is known
at annotation time to the probability of being right:

    p(right | x, r, w) = σ(a_w + b₁ x + b₂ log r)

with x the word's ranking score relative to the image's best one (Eq. 5 and transfer: s / s_max; standardised
scores: z − z_max), r its rank, and a_w = a + δ_w a per-word intercept. The pooled curve (a, b) is fitted on all
words (scikit-learn's logistic regression); each word's offset δ_w by a few Newton steps of its own penalised
log-likelihood, with a Gaussian prior of variance 1/``SHRINK`` towards 0: a word with many held-out predictions
gets its own calibration, a word with few stays near the pooled curve. A confidence cut is also chosen here, on the
same held-out predictions: the one whose variable-length annotations (every word at or above it) give the best F1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from annot.fitting.cv import cross_validate
from annot.metrics import per_word_metrics, predictions_matrix, summarize
from annot.progress import Progress
from annot.retrieval.scoring import Scored
from annot.settings import BuildSettings, Score

POOL = 10  # words per held-out image that calibration learns from (and that --min-confidence chooses among)
SAMPLE = 5_000  # at most this many training images are held out (in 5 folds) to calibrate on
FOLDS = 5
SHRINK = 4.0  # prior precision of a word's intercept offset: about that many predictions before it moves far
CUTS = np.round(np.arange(0.05, 0.951, 0.025), 3)


def relative_scores(scores: NDArray[np.float64], standardized: bool) -> NDArray[np.float64]:
    """Each word's ranking score relative to the image's best (the first): a ratio, or a difference of z-scores."""
    scores = np.asarray(scores, np.float64)
    if not len(scores):
        return scores
    if standardized:
        return scores - scores[0]
    return scores / max(float(scores[0]), 1e-12)


@dataclass(frozen=True)
class Calibration:
    """A fitted calibration: the pooled intercept and slopes, each word's offset, the chosen cut, and what it was
    measured on."""

    intercept: float
    slopes: tuple[float, float]
    offsets: NDArray[np.float64]
    cut: float
    standardized: bool
    measured: dict[str, Any]

    def confidence(self, words: NDArray[np.int64], scores: NDArray[np.float64]) -> NDArray[np.float64]:
        """The probability that each of an image's ranked words (best first) is right."""
        words = np.asarray(words, np.int64)
        if not len(words):
            return np.zeros(0)
        x = relative_scores(scores, self.standardized)
        rank = np.arange(1, len(words) + 1, dtype=np.float64)
        offsets = np.zeros(len(words))  # a word added since the calibration (a correction's) has the pooled curve
        known = words < len(self.offsets)
        offsets[known] = self.offsets[words[known]]
        logit = self.intercept + offsets + self.slopes[0] * x + self.slopes[1] * np.log(rank)
        return 1.0 / (1.0 + np.exp(-logit))

    def to_arrays(self) -> dict[str, NDArray[Any]]:
        return {"intercept": np.array([self.intercept]), "slopes": np.array(self.slopes), "offsets": self.offsets,
                "cut": np.array([self.cut]), "standardized": np.array([self.standardized])}

    @classmethod
    def from_arrays(cls, arrays: dict[str, NDArray[Any]], measured: dict[str, Any]) -> Calibration:
        return cls(float(arrays["intercept"][0]), (float(arrays["slopes"][0]), float(arrays["slopes"][1])),
                   np.asarray(arrays["offsets"], np.float64), float(arrays["cut"][0]), bool(arrays["standardized"][0]),
                   measured)


def calibration_key(settings: BuildSettings) -> str:
    """What a calibration holds for: the method and its scoring settings (not the number of tags)."""
    s = settings.scoring
    return f"{s.method}|{s.score}|k={s.k}|t={s.temperature}|a={s.frequency_power}|d={s.depth}"


def examples(held: list[tuple[NDArray[np.int64], list[Scored]]], labels: NDArray[np.bool_], standardized: bool,
             ) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.bool_], NDArray[np.int64]]:
    """Held-out predictions as rows (relative score, rank, word, right?) and each row's image (a training row)."""
    x: list[float] = []
    rank: list[int] = []
    word: list[int] = []
    right: list[bool] = []
    image: list[int] = []
    for rows, scored in held:
        for row, s in zip(rows.tolist(), scored, strict=True):
            n = len(s.words)
            x.extend(relative_scores(s.scores, standardized))
            rank.extend(range(1, n + 1))
            word.extend(s.words.tolist())
            right.extend(labels[row, s.words].tolist())
            image.extend([row] * n)
    features = np.column_stack([np.asarray(x, np.float64), np.log(np.asarray(rank, np.float64))]) if x else \
        np.zeros((0, 2))
    return features, np.asarray(word, np.int64), np.asarray(right, bool), np.asarray(image, np.int64)


def fit_curve(features: NDArray[np.float64], words: NDArray[np.int64], right: NDArray[np.bool_], n_words: int,
              shrink: float = SHRINK) -> tuple[float, tuple[float, float], NDArray[np.float64]]:
    """The pooled logistic curve, then each word's shrunk intercept offset (Newton on its penalised likelihood)."""
    from sklearn.linear_model import LogisticRegression

    offsets = np.zeros(n_words)
    if len(np.unique(right)) < 2:  # all right or all wrong: a constant
        p = float(np.clip(right.mean() if len(right) else 0.5, 1e-3, 1 - 1e-3))
        return float(np.log(p / (1 - p))), (0.0, 0.0), offsets
    pooled = LogisticRegression(C=1e4, max_iter=1000).fit(features, right)
    intercept, slopes = float(pooled.intercept_[0]), (float(pooled.coef_[0, 0]), float(pooled.coef_[0, 1]))
    base = intercept + features @ np.array(slopes)
    y = right.astype(np.float64)
    for w in np.unique(words):
        rows = words == w
        b, t = base[rows], y[rows]
        d = 0.0
        for _ in range(20):  # maximise Σ log-likelihood − shrink d² / 2
            p = 1.0 / (1.0 + np.exp(-(b + d)))
            gradient = float((t - p).sum()) - shrink * d
            hessian = float((p * (1 - p)).sum()) + shrink
            step = gradient / hessian
            d += step
            if abs(step) < 1e-8:
                break
        offsets[w] = d
    return intercept, slopes, offsets


def reliability(confidence: NDArray[np.float64], right: NDArray[np.bool_], bins: int = 10) -> dict[str, Any]:
    """Expected calibration error (the mean |accuracy − confidence| over equal-width bins, weighted by their size)
    and the bins: what a reliability diagram draws."""
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    table = []
    ece = 0.0
    for b in range(bins):
        inside = index == b
        n = int(inside.sum())
        if n:
            accuracy, mean = float(right[inside].mean()), float(confidence[inside].mean())
            ece += n / len(confidence) * abs(accuracy - mean)
            table.append({"low": float(edges[b]), "high": float(edges[b + 1]), "n": n, "confidence": round(mean, 4),
                          "accuracy": round(accuracy, 4)})
    return {"ece": round(ece, 4), "n": len(confidence), "bins": table}


def choose_cut(held: list[tuple[NDArray[np.int64], list[Scored]]], confidence: list[NDArray[np.float64]],
               labels: NDArray[np.bool_]) -> tuple[float, dict[str, float]]:
    """The confidence cut whose annotations (every word at or above it, at least none) give the best held-out F1."""
    rows = np.concatenate([r for r, _ in held])
    scored = [s for _, part in held for s in part]
    truth = labels[rows]
    best: tuple[float, float, dict[str, float]] = (-1.0, 0.5, {})
    for cut in CUTS:
        words = [s.words[c >= cut] for s, c in zip(scored, confidence, strict=True)]
        summary = summarize(per_word_metrics(truth, predictions_matrix(words, labels.shape[1])), len(rows))
        if summary.f1 > best[0]:
            best = (summary.f1, float(cut), summary.as_percent())
    return best[1], best[2]


def calibrate(X: NDArray[np.float32], labels: NDArray[np.bool_], E: NDArray[np.float32], has_vector: NDArray[np.bool_],
              settings: BuildSettings, progress: Progress | None = None, seed: int = 0) -> Calibration:
    """Fit the confidence of ``settings``' annotations on the training images (X, labels), held out by folds."""
    n = len(X)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, SAMPLE), replace=False))
    X, labels = X[rows], labels[rows]
    candidate = settings.replace(scoring=settings.scoring.replace(n_tags=POOL))
    held: dict[BuildSettings, list[tuple[NDArray[np.int64], list[Scored]]]] = {candidate: []}
    cross_validate(X, labels, E, has_vector, [candidate], folds=FOLDS, design="random", seed=seed,
                   progress=progress, predictions=held)
    standardized = settings.scoring.method == "cca-knn" and settings.scoring.score is not Score.EQ5
    features, words, right, _ = examples(held[candidate], labels, standardized)
    intercept, slopes, offsets = fit_curve(features, words, right, labels.shape[1])
    fitted = Calibration(intercept, slopes, offsets, 0.5, standardized, {})
    per_image = [fitted.confidence(s.words, s.scores) for _, part in held[candidate] for s in part]
    cut, at_cut = choose_cut(held[candidate], per_image, labels)
    measured = {"held_out_images": len(X), "held_out_predictions": len(right),
                "held_out_reliability": reliability(np.concatenate(per_image) if per_image else np.zeros(0), right),
                "held_out_at_cut": at_cut}
    return Calibration(intercept, slopes, offsets, cut, standardized, measured)
