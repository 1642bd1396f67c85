"""``svm-dmbrm``: per-word SVMs combined with a relevance model (Murthy, Can & Manmatha, ICMR 2014).

The hybrid's discriminative half is one linear SVM per word (scikit-learn's LinearSVC, classes balanced), its
decision values turned into probabilities by Platt's sigmoid fitted on out-of-fold decisions (3 folds, so the
sigmoid never sees an SVM's own training margins). The generative half is the relevance model: the 2014 paper's
DMBRM (a *discrete* MBRM over vector-quantised, LDA-reduced local features) does not apply to a global CNN feature, so
here it is the continuous MBRM of ``mbrm`` on the same features. The two are combined log-linearly,
score(w) = λ log P_svm(w | I) + (1 − λ) log P_mbrm(w | I), P_mbrm normalised over the vocabulary: the SVM lifts words
the relevance model under-predicts (weak annotation), the relevance model keeps the frequency prior of sparse words.
λ and the SVM's C are chosen on held-out training images (out-of-fold SVM probabilities, leave-one-out MBRM).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from annot.methods.baselines.base import (
    QUIET,
    Arrays,
    Baseline,
    choose,
    exclude_self,
    f1_of,
    sq_l2_distances,
    validation_rows,
)
from annot.methods.baselines.neighbours import MBRM, _top
from annot.progress import Progress
from annot.retrieval.scoring import Scored

FOLDS = 3
C_GRID = (0.1, 1.0)
LAMBDA_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def _platt(decision: NDArray[np.float64], y: NDArray[np.bool_]) -> tuple[float, float]:
    """Platt's sigmoid P(y = 1 | f) = σ(a f + b), by logistic regression on the decision values."""
    from sklearn.linear_model import LogisticRegression

    if y.all() or not y.any():
        return 0.0, 8.0 if y.all() else -8.0
    model = LogisticRegression(C=1e4).fit(decision[:, None], y)
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def _fit_word(X: NDArray[np.float32], y: NDArray[np.bool_], C: float, seed: int
              ) -> tuple[NDArray[np.float64], float, NDArray[np.float64]]:
    """One word's SVM on all rows, and its out-of-fold decision values."""
    from sklearn.model_selection import StratifiedKFold
    from sklearn.svm import LinearSVC

    def svm() -> LinearSVC:
        return LinearSVC(C=C, class_weight="balanced", max_iter=5000, random_state=seed)

    if y.all() or not y.any():  # one class only: a constant decision
        bias = 1.0 if y.all() else -1.0
        return np.zeros(X.shape[1]), bias, np.full(len(X), bias)
    oof = np.zeros(len(X))
    folds = min(FOLDS, int(y.sum()), int((~y).sum()))
    if folds >= 2:
        for train, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
            oof[held] = svm().fit(X[train], y[train]).decision_function(X[held])
    model = svm().fit(X, y)
    return model.coef_[0].astype(np.float64), float(model.intercept_[0]), oof


class SVMDMBRM(Baseline):
    __doc__ = __doc__
    name = "svm-dmbrm"
    min_images = 6
    trained = True

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        self.mbrm = MBRM(data)
        self.coef = np.zeros((0, data.X.shape[1]))
        self.intercept = np.zeros(0)
        self.platt = np.zeros((0, 2))

    def _svms(self, C: float, progress: Progress) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        from joblib import Parallel, delayed

        X, labels = self.data.X, self.data.labels
        V = labels.shape[1]
        coef, intercept, oof = np.zeros((V, X.shape[1])), np.zeros(V), np.zeros((len(X), V))
        with progress.task(f"svm-dmbrm: {V} word SVMs (C={C}, {FOLDS}-fold Platt)", V) as advance:
            jobs = (delayed(_fit_word)(X, labels[:, w], C, w) for w in range(V))
            for w, (c, b, o) in enumerate(Parallel(n_jobs=2, return_as="generator")(jobs)):
                coef[w], intercept[w], oof[:, w] = c, b, o
                advance(1)
        return coef, intercept, oof

    def fit(self, progress: Progress = QUIET) -> None:
        self.mbrm.fit(progress)
        rows = validation_rows(len(self.data.X))
        truth = self.data.labels[rows]
        D = exclude_self(sq_l2_distances(self.data.X[rows], self.data.X), rows)
        log_mbrm = self._log_mbrm(D)
        results = []
        for C in C_GRID:
            coef, intercept, oof = self._svms(C, progress)
            platt = np.array([_platt(oof[:, w], self.data.labels[:, w]) for w in range(len(coef))])
            log_svm = self._log_svm(oof[rows], platt)

            def held_out(c: dict[str, Any], log_svm: NDArray[np.float64] = log_svm) -> tuple[float, int]:
                return f1_of(_top(self._combine(log_svm, log_mbrm, c["lambda"]), self.data.frequency, 5), truth)

            lam, f1, n_plus = choose([{"lambda": lam} for lam in LAMBDA_GRID], held_out)
            results.append((f1, n_plus, C, lam["lambda"], coef, intercept, platt))
        f1, n_plus, C, lam, self.coef, self.intercept, self.platt = max(results, key=lambda r: (r[0], r[1]))
        self.hyper = {"C": C, "lambda": lam, "mbrm_beta": self.mbrm.hyper["beta"], "mbrm_mu": self.mbrm.hyper["mu"]}
        self.validation = {"f1": round(f1, 5), "n_plus": n_plus, "mbrm_f1": self.mbrm.validation["f1"]}

    @staticmethod
    def _log_svm(decision: NDArray[np.float64], platt: NDArray[np.float64]) -> NDArray[np.float64]:
        z = decision * platt[:, 0] + platt[:, 1]
        return -np.logaddexp(0.0, -z)  # log σ(z)

    def _log_mbrm(self, D: NDArray[np.float32]) -> NDArray[np.float64]:
        s = self.mbrm.scores(D, float(self.mbrm.hyper["beta"]), float(self.mbrm.hyper["mu"]))
        return np.log(np.maximum(s / s.sum(axis=1, keepdims=True), 1e-300))

    @staticmethod
    def _combine(log_svm: NDArray[np.float64], log_mbrm: NDArray[np.float64], lam: float) -> NDArray[np.float64]:
        """Log-linear mixture, shifted so every score is positive (``top_words`` keeps positive scores only)."""
        s = lam * log_svm + (1.0 - lam) * log_mbrm
        return s - s.min(axis=1, keepdims=True) + 1e-9

    def annotate(self, Xq: NDArray[np.float32], n_tags: int) -> tuple[list[Scored], NDArray[np.float32] | None]:
        D = sq_l2_distances(Xq, self.data.X)
        log_svm = self._log_svm(Xq.astype(np.float64) @ self.coef.T + self.intercept, self.platt)
        scores = self._combine(log_svm, self._log_mbrm(D), float(self.hyper["lambda"]))
        beta = float(self.hyper["mbrm_beta"])
        return self.ranked(scores, n_tags, D / beta, self.carriers(D)), D

    def arrays(self) -> Arrays:
        return {"coef": self.coef.astype(np.float32), "intercept": self.intercept, "platt": self.platt}

    def restore(self, params: dict[str, Any], arrays: Arrays) -> None:
        super().restore(params, arrays)
        self.coef = np.asarray(arrays["coef"], np.float64)
        self.intercept = np.asarray(arrays["intercept"], np.float64)
        self.platt = np.asarray(arrays["platt"], np.float64)
        self.mbrm.hyper = {"beta": self.hyper["mbrm_beta"], "mu": self.hyper["mbrm_mu"]}
