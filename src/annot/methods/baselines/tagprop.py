"""``tagprop``: TagProp σML (Guillaumin, Mensink, Verbeek & Schmid, ICCV 2009).

A word's prediction for image i is a weighted vote of its K neighbours, x_iw = Σ_j π_ij y_jw, passed through a
per-word logistic, p(y_iw = 1) = σ(α_w x_iw + β_w) (the σ of σML, which lifts rare words). Neighbour weights are
either distance based, π_ij ∝ exp(−Σ_b θ_b d_b(i, j)) with one learned θ_b ≥ 0 per base distance (the "ML" of
σML), or rank based, π_ij = γ_rank(j) with learned γ (softmax over K ranks). All parameters maximise the
log-likelihood of the training tags, each image predicted from its neighbours other than itself, with the paper's
class balancing (positives weighted 1/n₊, negatives 1/n₋). Both variants are trained; the one with the better F1 on
held-out training images (their predictions exclude themselves, so they are held out) is kept.

Choices: K = 200 as the paper; base distances L1 and squared L2 of the normalised CNN feature, each scaled by its
mean over training pairs; neighbours are the K nearest under the equal-weight sum at training time and under the
learned distance at query time; L-BFGS over the full training set.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from annot.methods.baselines.base import (
    QUIET,
    Arrays,
    Baseline,
    base_distances,
    batches,
    distance_scales,
    f1_of,
    validation_rows,
)
from annot.progress import Progress
from annot.retrieval.scoring import Scored, top_words

K_NEIGHBOURS = 200
VARIANTS = ("distance", "rank")


def _sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


class TagProp(Baseline):
    __doc__ = __doc__
    name = "tagprop"
    min_images = 3
    trained = True

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        self.theta = np.zeros(2)
        self.gamma = np.zeros(0)
        self.alpha = np.zeros(0)
        self.beta = np.zeros(0)

    # -- neighbours ------------------------------------------------------------------------------------------
    def _neighbours(self, Xq: NDArray[np.float32], theta: NDArray[np.float64], exclude: NDArray[np.int64] | None = None
                    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """The K nearest training rows under Σ_b θ_b d_b (scaled), and their scaled base distances (nq × K × B)."""
        scales = np.asarray(self.hyper["scales"], np.float64)
        K = min(int(self.hyper["K"]), len(self.data.X) - (1 if exclude is not None else 0))
        nbr = np.empty((len(Xq), K), np.int64)
        dist = np.empty((len(Xq), K, len(scales)), np.float32)
        for s in batches(len(Xq), len(self.data.X) * 3):
            parts = [d / np.float32(sc) for d, sc in zip(base_distances(Xq[s], self.data.X), scales, strict=True)]
            total = np.zeros_like(parts[0])
            for t, d in zip(theta, parts, strict=True):
                total += np.float32(t) * d
            if exclude is not None:
                total[np.arange(total.shape[0]), exclude[s]] = np.inf
            idx = np.argpartition(total, K - 1, axis=1)[:, :K]
            idx = np.take_along_axis(idx, np.argsort(np.take_along_axis(total, idx, 1), axis=1), 1)
            nbr[s] = idx
            dist[s] = np.stack([np.take_along_axis(d, idx, 1) for d in parts], axis=-1)
        return nbr, dist

    # -- training --------------------------------------------------------------------------------------------
    def fit(self, progress: Progress = QUIET) -> None:
        n = len(self.data.X)
        self.hyper = {"K": min(K_NEIGHBOURS, n - 1), "scales": distance_scales(self.data.X).round(6).tolist()}
        with progress.task(f"tagprop: {self.hyper['K']} neighbours of {n} training images", None):
            nbr, dist = self._neighbours(self.data.X, np.ones(2), exclude=np.arange(n))
        rows = validation_rows(n)
        fitted: dict[str, tuple[dict[str, NDArray[np.float64]], float, int, float]] = {}
        for variant in VARIANTS:
            params, loss = self._train(variant, nbr, dist, progress)
            p = self._probabilities(params, nbr[rows], self._weights(variant, params, dist[rows]))
            f1, n_plus = f1_of([top_words(row, self.data.frequency, 5) for row in p], self.data.labels[rows])
            fitted[variant] = (params, f1, n_plus, loss)
        variant = max(VARIANTS, key=lambda v: (fitted[v][1], fitted[v][2]))
        params, f1, n_plus, loss = fitted[variant]
        self.hyper["variant"] = variant
        self.hyper["loss"] = round(loss, 6)
        self._set(params)
        other = next(v for v in VARIANTS if v != variant)
        self.validation = {"f1": round(f1, 5), "n_plus": n_plus, f"f1_{other}": round(fitted[other][1], 5)}

    def _train(self, variant: str, nbr: NDArray[np.int64], dist: NDArray[np.float32], progress: Progress
               ) -> tuple[dict[str, NDArray[np.float64]], float]:
        import torch

        n, K = nbr.shape
        Y = torch.from_numpy(self.data.labels.astype(np.float32))
        positives = float(Y.sum())
        c_pos, c_neg = 1.0 / max(positives, 1.0), 1.0 / max(Y.numel() - positives, 1.0)
        rows = torch.arange(n).repeat_interleave(K)
        cols = torch.from_numpy(nbr.reshape(-1))
        d = torch.from_numpy(dist.astype(np.float32))
        frequency = (Y.mean(0)).clamp(1e-4, 1 - 1e-4)
        theta_raw = torch.full((d.shape[-1],), 2.0, requires_grad=True)  # softplus(2) ≈ 2.1 per base distance
        gamma_raw = torch.zeros(K, requires_grad=True)
        alpha = torch.full((Y.shape[1],), 4.0, requires_grad=True)
        beta = torch.log(frequency / (1 - frequency)).clone().requires_grad_(True)
        params = [alpha, beta, theta_raw] if variant == "distance" else [alpha, beta, gamma_raw]
        optimiser = torch.optim.LBFGS(params, lr=1.0, max_iter=150, history_size=20, line_search_fn="strong_wolfe")

        def pi() -> torch.Tensor:
            if variant == "distance":
                return torch.softmax(-(d * torch.nn.functional.softplus(theta_raw)).sum(-1), dim=1)
            return torch.softmax(gamma_raw, dim=0).expand(n, K)

        last = [0.0]
        with progress.task(f"tagprop ({variant}): maximising the likelihood", 150) as advance:
            def closure() -> torch.Tensor:
                optimiser.zero_grad()
                P = torch.sparse_coo_tensor(torch.stack([rows, cols]), pi().reshape(-1), (n, n), check_invariants=False)
                x = torch.sparse.mm(P, Y)
                z = alpha * x + beta
                loss = -(c_pos * (Y * torch.nn.functional.logsigmoid(z)).sum()
                         + c_neg * ((1 - Y) * torch.nn.functional.logsigmoid(-z)).sum())
                loss.backward()
                last[0] = loss.item()
                advance(1)
                return loss

            optimiser.step(closure)
        out = {"alpha": alpha.detach().double().numpy(), "beta": beta.detach().double().numpy()}
        if variant == "distance":
            out["theta"] = torch.nn.functional.softplus(theta_raw).detach().double().numpy()
        else:
            out["gamma"] = torch.softmax(gamma_raw, 0).detach().double().numpy()
        return out, last[0]

    def _set(self, params: dict[str, NDArray[np.float64]]) -> None:
        self.alpha, self.beta = params["alpha"], params["beta"]
        self.theta = params.get("theta", np.ones(2))
        self.gamma = params.get("gamma", np.zeros(0))

    # -- prediction ------------------------------------------------------------------------------------------
    def _weights(self, variant: str, params: dict[str, NDArray[np.float64]], dist: NDArray[np.float32]) -> NDArray[np.float64]:
        if variant == "distance":
            z = -(dist.astype(np.float64) * params["theta"]).sum(-1)
            z -= z.max(axis=1, keepdims=True)
            w = np.exp(z)
            return w / w.sum(axis=1, keepdims=True)
        return np.broadcast_to(params["gamma"][: dist.shape[1]], dist.shape[:2]).copy()

    def _probabilities(self, params: dict[str, NDArray[np.float64]], nbr: NDArray[np.int64],
                       pi: NDArray[np.float64]) -> NDArray[np.float64]:
        """σ(α_w x_iw + β_w) with x_iw = Σ_j π_ij y_jw over each query's neighbours ``nbr`` and their weights ``pi``."""
        x = np.einsum("qk,qkv->qv", pi, self.data.labels[nbr].astype(np.float64))
        return _sigmoid(params["alpha"] * x + params["beta"])

    def annotate(self, Xq: NDArray[np.float32], n_tags: int) -> tuple[list[Scored], NDArray[np.float32] | None]:
        variant = str(self.hyper["variant"])
        params = {"alpha": self.alpha, "beta": self.beta, "theta": self.theta, "gamma": self.gamma}
        theta = self.theta if variant == "distance" else np.ones(len(self.theta))
        out: list[Scored] = []
        D = np.full((len(Xq), len(self.data.X)), np.inf, np.float32)
        for s in batches(len(Xq), len(self.data.X) * 3):
            nbr, dist = self._neighbours(Xq[s], theta)
            np.put_along_axis(D[s], nbr, (dist * theta.astype(np.float32)).sum(-1), axis=1)
            pi = self._weights(variant, params, dist)
            p = self._probabilities(params, nbr, pi)
            for q in range(len(p)):
                words = top_words(p[q], self.data.frequency, n_tags)
                weights = np.zeros(len(self.data.X))
                weights[nbr[q]] = pi[q]
                voters = [nbr[q][self.data.labels[nbr[q], w]] for w in words]
                out.append(Scored(words, p[q, words], voters, weights))
        return out, D

    def arrays(self) -> Arrays:
        return {"alpha": self.alpha, "beta": self.beta, "theta": self.theta, "gamma": self.gamma}

    def restore(self, params: dict[str, Any], arrays: Arrays) -> None:
        super().restore(params, arrays)
        self._set({k: np.asarray(v, np.float64) for k, v in arrays.items()})
