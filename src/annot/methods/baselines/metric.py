"""``2pknn-ml``: 2PKNN with metric learning (Verma & Jawahar, ECCV 2012, §4).

2PKNN+ML learns a weight for every dimension of every feature, D_w(A, B) = Σ_d w_d |A_d − B_d| (for one CNN
feature: a weighted L1 distance), with a large-margin objective over each image's neighbourhood: images that share
more of its labels (targets) should be nearer than images that share fewer (impostors), by a margin that grows with
the difference in label overlap, and targets are pulled in.

Choices where the paper is loose (and what keeps it tractable on a laptop): each image's candidates are its 30
nearest training images under plain L1; triplets (i, j, l) are sampled among them with Jaccard(i, j) > Jaccard(i, l)
and margin Jaccard(i, j) − Jaccard(i, l); distances are divided by their batch mean (the objective is then blind to
the overall scale of w, which the paper fixes with a regulariser); w = softplus(v) ≥ 0, from w = 1 (plain L1);
Adam for a fixed number of epochs. K1 and τ are then chosen on held-out training queries, as for 2PKNN.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from annot.methods.baselines.base import QUIET, Arrays, batches, l1_distances
from annot.methods.baselines.neighbours import TwoPassKNN
from annot.progress import Progress

CANDIDATES = 30
TRIPLETS_PER_IMAGE = 8
PULL = 0.1


def jaccard(A: NDArray[np.bool_], B: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Row-wise Jaccard overlap of 0/1 label rows (broadcasting over leading axes)."""
    inter = (A & B).sum(-1)
    union = (A | B).sum(-1)
    return inter / np.maximum(union, 1)


def neighbourhoods(X: NDArray[np.float32], m: int) -> NDArray[np.int64]:
    """Each training image's m nearest other training images under L1 (n × m)."""
    out = np.empty((len(X), m), np.int64)
    for s in batches(len(X), len(X)):
        D = l1_distances(X[s], X)
        D[np.arange(D.shape[0]), np.arange(s.start, s.stop)] = np.inf
        part = np.argpartition(D, m - 1, axis=1)[:, :m]
        out[s] = np.take_along_axis(part, np.argsort(np.take_along_axis(D, part, 1), axis=1), 1)
    return out


def learn_dimension_weights(
    X: NDArray[np.float32], labels: NDArray[np.bool_], epochs: int = 20, seed: int = 0, progress: Progress = QUIET
) -> tuple[NDArray[np.float32], list[float]]:
    """Per-dimension weights w ≥ 0 of a weighted L1 distance, learned from label overlap; returns w and the loss
    per epoch."""
    import torch

    rng = np.random.default_rng(seed)
    m = min(CANDIDATES, len(X) - 1)
    with progress.task("2pknn-ml: neighbourhoods", None):
        nbr = neighbourhoods(X, m)
    overlap = jaccard(labels[:, None, :], labels[nbr])  # n × m
    x = torch.from_numpy(np.ascontiguousarray(X, np.float32))
    v = torch.full((X.shape[1],), float(np.log(np.e - 1.0)), requires_grad=True)  # softplus(v) = 1
    optimiser = torch.optim.Adam([v], lr=0.05)
    losses: list[float] = []
    with progress.task("2pknn-ml: learning dimension weights", epochs) as advance:
        for _ in range(epochs):
            a = np.repeat(np.arange(len(X)), TRIPLETS_PER_IMAGE)
            j = rng.integers(0, m, len(a))
            l_ = rng.integers(0, m, len(a))
            gap = overlap[a, j] - overlap[a, l_]
            keep = gap != 0
            a, j, l_, gap = a[keep], j[keep], l_[keep], gap[keep]
            near, far = np.where(gap > 0, j, l_), np.where(gap > 0, l_, j)  # near shares more labels
            margin = torch.from_numpy(np.abs(gap).astype(np.float32))
            order = rng.permutation(len(a))
            total = 0.0
            for lo in range(0, len(order), 4096):
                b = order[lo : lo + 4096]
                w = torch.nn.functional.softplus(v)
                anchor = x[a[b]]
                d_near = (w * (anchor - x[nbr[a[b], near[b]]]).abs()).sum(1)
                d_far = (w * (anchor - x[nbr[a[b], far[b]]]).abs()).sum(1)
                scale = torch.cat([d_near, d_far]).mean()
                d_near, d_far = d_near / scale, d_far / scale
                loss = torch.relu(margin[b] + d_near - d_far).mean() + PULL * d_near.mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += loss.item() * len(b)
            losses.append(total / max(1, len(order)))
            advance(1)
    weights: NDArray[np.float32] = torch.nn.functional.softplus(v).detach().numpy().astype(np.float32)
    return weights / weights.mean(), losses


class TwoPassKNNML(TwoPassKNN):
    __doc__ = __doc__
    name = "2pknn-ml"
    min_images = 3
    trained = True

    def prepare(self, progress: Progress) -> None:
        w, losses = learn_dimension_weights(self.data.X, self.data.labels, progress=progress)
        self._set_weights(w)
        self.hyper = {"scale": self.scale, "epochs": len(losses), "loss_first": round(losses[0], 5), "loss_last": round(losses[-1], 5)}

    def _set_weights(self, w: NDArray[np.float32]) -> None:
        self.w = w
        self.Xw = self.data.X * w
        rng = np.random.default_rng(0)
        a, b = rng.integers(0, len(self.Xw), (2, min(2000, len(self.Xw))))
        self.scale = round(float(np.abs(self.Xw[a] - self.Xw[b]).sum(1).mean()) or 1.0, 6)

    def distances(self, Xq: NDArray[np.float32]) -> NDArray[np.float32]:
        scale = np.float32(self.hyper["scale"])
        return np.concatenate([l1_distances(Xq[s] * self.w, self.Xw) / scale for s in batches(len(Xq), len(self.Xw))])

    def arrays(self) -> Arrays:
        return {"w": self.w}

    def restore(self, params: dict[str, Any], arrays: Arrays) -> None:
        super().restore(params, arrays)
        self._set_weights(np.asarray(arrays["w"], np.float32))
