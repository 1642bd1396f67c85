"""A loaded store, ready to annotate: the fitted projection, the image index and the training tags."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from annot.errors import AnnotError, StoreError
from annot.projection import LinearCCA
from annot.retrieval.indexes import index_ids, load_index, search_correlation
from annot.retrieval.scoring import cca_knn_scores, nn_transfer, top_words
from annot.schema.queries import image_paths, label_matrix
from annot.store import Store

log = logging.getLogger(__name__)

METHODS = ("cca-knn", "nn")
EXACT_NEIGHBOURS = 20000  # below this many indexed images, CCA-KNN looks at all of them


@dataclass(frozen=True)
class Vote:
    """A training image that voted for a tag: its id, path, correlation distance and weight."""

    image_id: int
    path: str
    distance: float
    weight: float


@dataclass(frozen=True)
class TagScore:
    tag: str
    score: float
    evidence: tuple[Vote, ...] = ()


@dataclass(frozen=True)
class Annotation:
    image: str
    tags: tuple[TagScore, ...]

    def to_dict(self, explain: bool = False) -> dict[str, Any]:
        tags = []
        for t in self.tags:
            item: dict[str, Any] = {"tag": t.tag, "score": round(t.score, 6)}
            if explain:
                item["evidence"] = [
                    {"image_id": v.image_id, "path": v.path, "distance": round(v.distance, 6), "weight": round(v.weight, 6)}
                    for v in t.evidence
                ]
            tags.append(item)
        return {"image": self.image, "tags": tags}


@dataclass(frozen=True)
class Prediction:
    """Ranked word positions for one query, with scores and, for each word, the neighbour rows that voted."""

    words: NDArray[np.int64]
    scores: NDArray[np.float64]
    votes: list[list[tuple[int, float, float]]]  # per word: (image id, distance, weight)


class AnnotationModel:
    """Everything ``annot query`` and ``annot eval`` need from a store, loaded once."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.manifest = store.manifest()
        m = self.manifest
        try:
            self.vocabulary: list[str] = list(m["vocabulary"]["words"])
            self.tag_ids: list[int] = [int(t) for t in m["vocabulary"]["tag_ids"]]
            projection_file = store.path(m["projection"]["file"])
            with np.load(projection_file) as arrays:
                self.projection = LinearCCA.from_arrays(dict(arrays), projection_file)
            self.index = load_index(store.path(m["index"]["file"]))
        except (KeyError, TypeError, OSError) as exc:
            raise StoreError(f"{store.root}: incomplete manifest or model files ({exc})") from exc
        self.ids = index_ids(self.index)
        self.labels = label_matrix(store.db, self.ids.tolist(), self.tag_ids)
        self.row_of_id = {int(i): r for r, i in enumerate(self.ids)}
        self.frequency = self.labels.sum(axis=0).astype(np.int64)
        self.defaults: dict[str, Any] = dict(m.get("annotation", {}))

    @classmethod
    def open(cls, store_root: Path) -> AnnotationModel:
        return cls(Store.open(Path(store_root), read_only=True))

    def close(self) -> None:
        self.store.close()

    def project(self, X: NDArray[np.floating]) -> NDArray[np.float32]:
        """T = (x − μx) W_x."""
        return self.projection.transform(X)

    def predict(
        self,
        X: NDArray[np.floating],
        method: str | None = None,
        n_tags: int | None = None,
        k: int | None = None,
        temperature: float | None = None,
    ) -> list[Prediction]:
        """Annotate image features X (n × p) with ``method``; unset settings come from the store."""
        method = method or self.defaults.get("method", "cca-knn")
        n_tags = int(n_tags or self.defaults.get("n_tags", 5))
        k = int(k or self.defaults.get("k", 8))
        temperature = float(temperature or self.defaults.get("temperature", 1.0))
        if method not in METHODS:
            raise AnnotError(f"unknown method {method!r} (known: {', '.join(METHODS)})")
        if n_tags < 1 or k < 1 or temperature <= 0:
            raise AnnotError(f"need n >= 1, k >= 1 and temperature > 0, got n={n_tags}, k={k}, temperature={temperature}")
        T = self.project(X)
        depth = self.index.ntotal if self.index.ntotal <= EXACT_NEIGHBOURS else max(2000, 50 * k)
        if method == "nn":
            depth = min(depth, 200)
        out: list[Prediction] = []
        for lo in range(0, len(T), 256):
            distances, ids = search_correlation(self.index, T[lo : lo + 256], depth)
            for d, i in zip(distances, ids, strict=True):
                valid = i >= 0
                d, i = d[valid], i[valid]
                rows = np.fromiter((self.row_of_id[int(x)] for x in i), np.int64, len(i))
                labels = self.labels[rows]
                if method == "nn":
                    out.append(self._nn(d, i, labels, n_tags))
                else:
                    out.append(self._cca_knn(d, i, labels, n_tags, k, temperature))
        return out

    def _nn(self, d: NDArray[np.float32], ids: NDArray[np.int64], labels: NDArray[np.bool_], n_tags: int) -> Prediction:
        chosen = nn_transfer(labels, self.frequency, n_tags)
        words = np.array([w for w, _ in chosen], np.int64)
        scores = np.array([1.0 - float(d[pos]) for _, pos in chosen])
        votes = [[(int(ids[pos]), float(d[pos]), 1.0)] for _, pos in chosen]
        return Prediction(words, scores, votes)

    def _cca_knn(
        self, d: NDArray[np.float32], ids: NDArray[np.int64], labels: NDArray[np.bool_], n_tags: int, k: int, temperature: float
    ) -> Prediction:
        scores, chosen, weights = cca_knn_scores(d, labels, k, temperature)
        words = top_words(scores, self.frequency, n_tags)
        votes = []
        for w in words:
            rows = np.flatnonzero(chosen & labels[:, w])
            votes.append([(int(ids[r]), float(d[r]), float(weights[r])) for r in rows])
        return Prediction(words, scores[words], votes)

    def annotations(self, names: Sequence[str], predictions: Sequence[Prediction], explain: bool = False) -> list[Annotation]:
        """Typed results with tag names and, with ``explain``, the voting training images and their paths."""
        paths: dict[int, str] = {}
        if explain:
            voters = {v[0] for p in predictions for word_votes in p.votes for v in word_votes}
            paths = image_paths(self.store.db, sorted(voters))
        out = []
        for name, p in zip(names, predictions, strict=True):
            tags = tuple(
                TagScore(
                    self.vocabulary[int(w)],
                    float(s),
                    tuple(Vote(i, paths.get(i, ""), dist, wt) for i, dist, wt in votes) if explain else (),
                )
                for w, s, votes in zip(p.words, p.scores, p.votes, strict=True)
            )
            out.append(Annotation(name, tags))
        return out
