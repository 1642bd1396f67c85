"""The paper's methods in the shared space (§3.4.1): CCA-KNN (Eq. 5) and annotation by transfer (``nn``).

A query image is projected (T = (x − μx) W_x), its nearest training images are found in the image index by
correlation distance, and its tags are scored from them (:mod:`annot.retrieval.scoring`). Up to 20,000 images an
exact index answers each query from every image (one dense queries × images problem); above that, from its own
candidate pool of ``pool_depth`` nearest images, scored as a batch of pools.

CCA-KNN can rank words by their Eq. 5 score standardised per word (``--score standardized``) against each word's
usual score: on the training images themselves, leave-one-out (computed here once per setting, or saved by ``annot
index``), or on images the projection was fitted without (``standardized-held-out``, saved by ``annot index`` for
the store's own settings: they need the projection fitted again per hold-out).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from annot.errors import AnnotError
from annot.methods.base import AnnotationMethod, Prediction, prediction, register_method
from annot.retrieval.ann import EXACT_NEIGHBOURS, pool_depth
from annot.retrieval.scoring import (
    Scored,
    cca_knn_pooled,
    cca_knn_scores,
    ranking,
    score_queries,
    top_words,
    word_standards,
)
from annot.settings import Score, ScoringSettings

if TYPE_CHECKING:  # the layer above, which builds the methods
    from annot.model import StoreModel

log = logging.getLogger(__name__)

QUERY_BATCH = 256  # queries searched together
POOL_BATCH = 64  # queries scored together over their own candidate pools (larger corpora)
STANDARDS_SAMPLE = 5_000  # training images whose leave-one-out scores give each word's standards (all, if fewer)
Standards = tuple[NDArray[np.float64], NDArray[np.float64]]


def standards_key(model: StoreModel, scoring: ScoringSettings) -> str:
    """What a word's standards depend on: the scoring settings and the indexed images (the index file's name)."""
    held_out = {"standards": "held-out"} if scoring.score is Score.HELD_OUT else {}
    return json.dumps({"index": model.manifest.index.file.path, "k": scoring.k, "k_power": 0.0,
                       "temperature": scoring.temperature, "frequency_power": scoring.frequency_power,
                       "depth": scoring.depth, **held_out}, sort_keys=True)


class _SpaceMethod(AnnotationMethod):
    """What the two methods in the shared space share: projecting, searching and scoring batches of queries."""

    method: str  # the scorer's name in annot.retrieval.scoring.score_queries

    def params(self, scoring: ScoringSettings) -> dict[str, Any]:
        s = self.model.settings
        return {**scoring.to_dict(), "projection": s.projection.kind.value, "encoder": self.model.manifest.encoder.key,
                "text": s.text.view.value}

    def standards(self, scoring: ScoringSettings) -> Standards | None:
        return None

    def predict(self, X: NDArray[np.floating], scoring: ScoringSettings, exclude: NDArray[np.int64] | None = None,
                ) -> list[Prediction]:
        model = self.model
        standards = self.standards(scoring)
        T = model.project(X)
        n = model.index.ntotal
        depth = pool_depth(n, scoring.k, scoring.depth, model.exact_index)
        out: list[Prediction] = []
        for lo in range(0, len(T), QUERY_BATCH):
            own = None if exclude is None else np.asarray(exclude[lo : lo + QUERY_BATCH], np.int64)
            D = model.all_distances(T[lo : lo + QUERY_BATCH]) if n <= EXACT_NEIGHBOURS and depth >= n else None
            if D is None:
                distances, ids = model.search(T[lo : lo + QUERY_BATCH], depth + (own is not None))
                if own is not None:  # a query's own image does not vote for it
                    drop = ids == own[:, None]
                    distances[drop], ids[drop] = np.inf, -1
            if n <= EXACT_NEIGHBOURS:  # small corpora: one dense (queries × images) problem, inf beyond the pool
                D = model.dense(distances, ids) if D is None else D
                if own is not None:
                    indexed = np.isin(own, model.ids)
                    D[np.flatnonzero(indexed), model.rows_of(own[indexed])] = np.inf
                scored = score_queries(self.method, D, model.labels, model.frequency, scoring.n_tags, scoring.k,
                                       scoring.temperature, scoring.frequency_power, standards)
                out.extend(prediction(s, model.ids, D[q]) for q, s in enumerate(scored))
            else:
                out.extend(self._from_pools(distances, ids, scoring, standards))
        return out

    def _from_pools(self, distances: NDArray[np.float32], ids: NDArray[np.int64], scoring: ScoringSettings,
                    standards: Standards | None) -> list[Prediction]:
        """Each query scored over its own candidate pool (corpora above ``EXACT_NEIGHBOURS`` images)."""
        out = []
        for d, i in zip(distances, ids, strict=True):
            valid = i >= 0
            d, i = d[valid][None, :], i[valid]
            labels = self.model.labels[self.model.rows_of(i)]
            s = score_queries(self.method, d, labels, self.model.frequency, scoring.n_tags, scoring.k,
                              scoring.temperature, scoring.frequency_power)[0]
            out.append(prediction(s, i, d[0]))
        return out


@register_method
class CCAKNN(_SpaceMethod):
    """CCA-KNN (paper §3.4.1, Eq. 5): the K nearest training images of each tag group vote with exp(−D/τ)."""

    name = "cca-knn"
    summary = "CCA-KNN (Eq. 5) in the shared space"
    method = "cca-knn"

    def __init__(self, model: StoreModel) -> None:
        super().__init__(model)
        self._standards: dict[str, Standards] = {}

    def _from_pools(self, distances: NDArray[np.float32], ids: NDArray[np.int64], scoring: ScoringSettings,
                    standards: Standards | None) -> list[Prediction]:
        model = self.model
        out: list[Prediction] = []
        for lo in range(0, len(ids), POOL_BATCH):
            i = ids[lo : lo + POOL_BATCH]
            d, rows = model.pool(distances[lo : lo + POOL_BATCH], i)
            scores, chosen, weights = cca_knn_pooled(d, rows, model.labels_csr, scoring.k, scoring.temperature,
                                                     model.frequency, scoring.frequency_power)
            scores, floor = ranking(scores, standards)
            for q in range(len(i)):
                words = top_words(scores[q], model.frequency, scoring.n_tags, floor)
                voters = [np.flatnonzero(chosen[q] & model.labels[rows[q], w]) for w in words]
                out.append(prediction(Scored(words, scores[q, words], voters, weights[q]), i[q], d[q]))
        return out

    def standards(self, scoring: ScoringSettings) -> Standards | None:
        """Each word's mean and spread of its query-normalised CCA-KNN score (``word_standards``) under ``scoring``:
        read from the store when it saved them for these settings, else computed once here from up to
        ``STANDARDS_SAMPLE`` training images, each scored as a query over the other training images exactly as
        ``predict`` scores a new image. Held-out standards exist for the store's own settings only."""
        if scoring.score is Score.EQ5:
            return None
        key = standards_key(self.model, scoring)
        if key not in self._standards:
            saved = self.model.manifest.standards
            if saved is not None and saved.key == key:
                arrays = self.model.store.read_arrays(saved.file, "word standards")
                self._standards[key] = (arrays["mean"], arrays["spread"])
            elif scoring.score is Score.HELD_OUT:
                raise AnnotError(f"{self.model.store.root}: held-out standards are saved for the store's own settings "
                                 "only (they refit the projection on 5 hold-outs); index with these settings and "
                                 "--score standardized-held-out, or use --score standardized")
            else:
                log.info("computing word standards for %s", key)
                self._standards[key] = word_standards(self.leave_one_out_scores(scoring))
        return self._standards[key]

    def leave_one_out_scores(self, scoring: ScoringSettings) -> NDArray[np.float64]:
        """Eq. 5 scores (n × V) of up to ``STANDARDS_SAMPLE`` training images (a fixed random sample), each a query
        whose own row is not among its candidates; the pool, K, τ and α are ``scoring``'s."""
        model = self.model
        n = len(model.ids)
        sample = np.sort(np.random.default_rng(0).choice(n, size=min(n, STANDARDS_SAMPLE), replace=False))
        T = model.training_rows(model.ids[sample])
        depth = pool_depth(n, scoring.k, scoring.depth, model.exact_index)
        out = np.zeros((len(sample), len(model.vocabulary)), np.float64)
        tau, alpha = scoring.temperature, scoring.frequency_power
        for lo in range(0, len(T), QUERY_BATCH):
            distances, ids = model.search(T[lo : lo + QUERY_BATCH], min(depth + 1, n))
            own = ids == model.ids[sample[lo : lo + QUERY_BATCH], None]
            distances[own], ids[own] = np.inf, -1
            # the pool without the query's own row (or, where it was not found, without the farthest), still in order
            keep = np.argsort(own, axis=1, kind="stable")[:, :depth]
            distances, ids = np.take_along_axis(distances, keep, 1), np.take_along_axis(ids, keep, 1)
            if n <= EXACT_NEIGHBOURS:
                scores = cca_knn_scores(model.dense(distances, ids), model.labels, scoring.k, tau, model.frequency,
                                        alpha)[0]
            else:
                scores = cca_knn_pooled(*model.pool(distances, ids), model.labels_csr, scoring.k, tau,
                                        model.frequency, alpha)[0]
            out[lo : lo + len(ids)] = scores
        return out


@register_method
class Transfer(_SpaceMethod):
    """Annotation by transfer (§3.4.1): the nearest training image's tags by training frequency, then the next's."""

    name = "nn"
    summary = "tag transfer from the nearest images in the shared space"
    method = "nn"
