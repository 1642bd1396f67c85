"""Nearest-neighbour baselines on the store's image features: the frequency prior, JEC, 2PKNN and MBRM."""

from __future__ import annotations

from functools import cached_property, partial

import numpy as np
from numpy.typing import NDArray

from annot.methods.baselines.base import (
    QUIET,
    Baseline,
    batches,
    choose,
    combined_distance,
    distance_scales,
    exclude_self,
    f1_of,
    sq_l2_distances,
    validation_rows,
)
from annot.progress import Progress
from annot.retrieval.scoring import Scored, cca_knn_scores, top_words


class Frequency(Baseline):
    """``freq``: every image gets the most frequent training words. The floor any method must beat."""

    name = "freq"
    min_images = 1

    def fit(self, progress: Progress = QUIET) -> None:
        self.hyper = {}

    def annotate(self, Xq: NDArray[np.float32], n_tags: int) -> tuple[list[Scored], NDArray[np.float32] | None]:
        prior = self.data.frequency / max(1, len(self.data.labels))
        return self.ranked(np.tile(prior, (len(Xq), 1)), n_tags), None


class JEC(Baseline):
    """``jec``: Joint Equal Contribution (Makadia, Pavlovic & Kumar, ECCV 2008).

    Distance: the equal-weight mean of the base distances (L1 and squared L2 on the normalised CNN feature), each
    divided by its mean over random training pairs. Label transfer in two stages, with K = 5 neighbours as in the
    paper: (1) the nearest neighbour's words, ranked by training frequency; (2) if fewer than n, the words of
    neighbours 2..K, ranked by co-occurrence with the words of stage 1 times local frequency.

    Choices where the paper is loose: co-occurrence of a candidate w is the mean over the stage-1 words t of
    P(w | t) on the training set, and it is multiplied by w's count among neighbours 2..K (the paper names both
    criteria without saying how they combine); ties go to the more frequent training word. Scores: stage-1 words get
    1 + P(w), stage-2 words their product (below 1), so the score order is the transfer order.
    """

    name = "jec"
    min_images = 1
    K = 5

    def fit(self, progress: Progress = QUIET) -> None:
        self.hyper = {"K": self.K, "scales": distance_scales(self.data.X).round(6).tolist()}

    @cached_property
    def cooccurrence(self) -> NDArray[np.float64]:
        """P(w | t) on the training tags, rows t: derived from the training data, so never stored."""
        labels = self.data.labels.astype(np.float64)
        counts = labels.T @ labels
        return counts / np.maximum(np.diag(counts)[:, None], 1.0)

    def annotate(self, Xq: NDArray[np.float32], n_tags: int) -> tuple[list[Scored], NDArray[np.float32] | None]:
        scales = np.asarray(self.hyper["scales"], np.float64)
        D = np.concatenate([combined_distance(Xq[s], self.data.X, scales) for s in batches(len(Xq), len(self.data.X))])
        return [self.transfer(D[q], n_tags) for q in range(len(D))], D

    def transfer(self, d: NDArray[np.float32], n_tags: int) -> Scored:
        labels, frequency = self.data.labels, self.data.frequency
        K = int(self.hyper.get("K", self.K))
        finite = np.flatnonzero(np.isfinite(d))
        neighbours = finite[np.argsort(d[finite], kind="stable")[:K]]
        words: list[int] = []
        scores: list[float] = []
        voters: list[NDArray[np.int64]] = []
        if len(neighbours) == 0:
            return Scored(np.zeros(0, np.int64), np.zeros(0), [], np.zeros(len(d)))
        first = np.flatnonzero(labels[neighbours[0]])
        prior = frequency / max(1, len(labels))
        for w in first[np.argsort(-frequency[first], kind="stable")][:n_tags]:
            words.append(int(w))
            scores.append(1.0 + float(prior[w]))
            voters.append(neighbours[:1].astype(np.int64))
        if len(words) < n_tags and len(neighbours) > 1:
            rest = neighbours[1:]
            local = labels[rest].sum(axis=0).astype(np.float64)
            local[words] = 0.0
            candidates = np.flatnonzero(local)
            co = self.cooccurrence[np.array(words, np.int64)][:, candidates].mean(axis=0) if words else np.ones(len(candidates))
            value = co * local[candidates]
            order = np.lexsort((-frequency[candidates], -local[candidates], -value))
            for i in order[: n_tags - len(words)]:
                w = int(candidates[i])
                words.append(w)
                scores.append(float(value[i]) / len(rest))
                voters.append(rest[labels[rest, w]].astype(np.int64))
        weights = np.zeros(len(d))
        weights[neighbours] = 1.0
        return Scored(np.array(words, np.int64), np.array(scores), voters, weights)


class TwoPassKNN(Baseline):
    """``2pknn``: two-pass KNN (Verma & Jawahar, ECCV 2012).

    Pass 1: from each word's group of training images, the K1 nearest to the query (the semantic neighbourhood).
    Pass 2: a word scores Σ exp(−D/τ) over the neighbourhood images that carry it. D is JEC's equal-weight base
    distance (2PKNN without metric learning weighs its base distances equally). K1 and τ (the paper's w = 1/τ) are
    chosen on held-out training queries.
    """

    name = "2pknn"
    K1_GRID = (1, 2, 3, 4, 6, 8)
    TAU_GRID = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)

    def distances(self, Xq: NDArray[np.float32]) -> NDArray[np.float32]:
        scales = np.asarray(self.hyper["scales"], np.float64)
        return np.concatenate([combined_distance(Xq[s], self.data.X, scales) for s in batches(len(Xq), len(self.data.X))])

    def prepare(self, progress: Progress) -> None:
        self.hyper = {"scales": distance_scales(self.data.X).round(6).tolist()}

    def fit(self, progress: Progress = QUIET) -> None:
        self.prepare(progress)
        rows = validation_rows(len(self.data.X))
        with progress.task(f"{self.name}: choosing K1 and τ on {len(rows)} held-out training images", None):
            D = exclude_self(self.distances(self.data.X[rows]), rows)
            truth = self.data.labels[rows]
            grid = [{"K1": k1, "tau": tau} for k1 in self.K1_GRID for tau in self.TAU_GRID]
            best, f1, n_plus = choose(grid, lambda c: f1_of(self._words(D, c["K1"], c["tau"], 5), truth))
        self.hyper.update(best)
        self.validation = {"f1": round(f1, 5), "n_plus": n_plus}

    def _words(self, D: NDArray[np.float32], k1: int, tau: float, n_tags: int) -> list[NDArray[np.int64]]:
        out = []
        for s in batches(len(D), len(self.data.X) * 4):
            scores, _, _ = cca_knn_scores(D[s], self.data.labels, k1, tau)
            out.extend(_top(scores, self.data.frequency, n_tags))
        return out

    def annotate(self, Xq: NDArray[np.float32], n_tags: int) -> tuple[list[Scored], NDArray[np.float32] | None]:
        D = self.distances(Xq)
        out: list[Scored] = []
        for s in batches(len(D), len(self.data.X) * 4):
            scores, chosen, _ = cca_knn_scores(D[s], self.data.labels, int(self.hyper["K1"]), float(self.hyper["tau"]))
            out.extend(self.ranked(scores, n_tags, D[s] / float(self.hyper["tau"]),
                                   partial(_voters, chosen, self.data.labels)))
        return out, D


def _voters(chosen: NDArray[np.bool_], labels: NDArray[np.bool_], q: int, w: int) -> NDArray[np.int64]:
    """The pooled neighbours of query ``q`` that carry word ``w``."""
    return np.flatnonzero(chosen[q] & labels[:, w])


def _top(scores: NDArray[np.float64], frequency: NDArray[np.int64], n_tags: int) -> list[NDArray[np.int64]]:
    return [top_words(row, frequency, n_tags) for row in scores]


class MBRM(Baseline):
    """``mbrm``: Multiple Bernoulli Relevance Model (Feng, Manmatha & Lavrenko, CVPR 2004).

    P(w, I) = Σ_J P(J) P(I | J) P_V(w | J) over training images J, with P(J) uniform, P(I | J) a Gaussian kernel
    exp(−‖x − x_J‖² / β) on the image features, and the smoothed Bernoulli P_V(w | J) = (μ δ_{w,J} + N_w) / (μ + N)
    (N_w: training images with w, N: all training images). Words rank by P(w, I). The paper's kernel runs over
    rectangular tiles of handcrafted features; here an image is one region, its CNN feature. β and μ are chosen on
    held-out training queries.
    """

    name = "mbrm"
    BETA_GRID = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
    MU_GRID = (1.0, 10.0, 100.0, 1000.0)

    def fit(self, progress: Progress = QUIET) -> None:
        rows = validation_rows(len(self.data.X))
        with progress.task(f"mbrm: choosing β and μ on {len(rows)} held-out training images", None):
            D = exclude_self(sq_l2_distances(self.data.X[rows], self.data.X), rows)
            truth = self.data.labels[rows]
            grid = [{"beta": b, "mu": m} for b in self.BETA_GRID for m in self.MU_GRID]
            best, f1, n_plus = choose(grid, lambda c: f1_of(_top(self.scores(D, c["beta"], c["mu"]), self.data.frequency, 5), truth))
        self.hyper = best
        self.validation = {"f1": round(f1, 5), "n_plus": n_plus}

    def scores(self, D: NDArray[np.float32], beta: float, mu: float) -> NDArray[np.float64]:
        """Σ_J k_J (μ δ_{w,J} + N_w), up to a per-query constant (kernels relative to the nearest image)."""
        kernel = np.exp(-(D - D.min(axis=1, keepdims=True)).astype(np.float64) / beta)
        kernel[~np.isfinite(D)] = 0.0
        return mu * (kernel @ self.data.labels.astype(np.float64)) + kernel.sum(axis=1, keepdims=True) * self.data.frequency[None, :]

    def annotate(self, Xq: NDArray[np.float32], n_tags: int) -> tuple[list[Scored], NDArray[np.float32] | None]:
        beta, mu = float(self.hyper["beta"]), float(self.hyper["mu"])
        D = sq_l2_distances(Xq, self.data.X)
        scores = self.scores(D, beta, mu)
        return self.ranked(scores, n_tags, D / beta, self.carriers(D)), D
