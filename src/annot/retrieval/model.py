"""A loaded store, ready to annotate: the fitted projection, the image index and the training tags."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from annot.errors import AnnotError, StoreError
from annot.features.encoders import ImageEncoder, encoder_of_manifest
from annot.features.text import normalize_features
from annot.projection import load_projection
from annot.retrieval.ann import EXACT_NEIGHBOURS, on_gpu, pool_depth, set_search
from annot.retrieval.baselines import BASELINES, Baseline
from annot.retrieval.indexes import index_ids, load_index, search_correlation
from annot.retrieval.scoring import (
    SCORES,
    STANDARDIZED,
    Scored,
    cca_knn_pooled,
    cca_knn_scores,
    ranking,
    score_queries,
    tag_k,
    top_words,
    word_standards,
)
from annot.schema.queries import image_paths, label_matrix
from annot.store import Store

if TYPE_CHECKING:
    from annot.cnnr.answer import WordIndex

log = logging.getLogger(__name__)

CCA_METHODS = ("cca-knn", "nn")
CNNR_METHOD = "cnn-r"
METHODS = (*CCA_METHODS, CNNR_METHOD, *BASELINES)
POOL_BATCH = 64  # queries scored together over their own candidate pools (larger corpora)
STANDARDS_SAMPLE = 5_000  # training images whose leave-one-out scores give each word's standards (all, if fewer)
Standards = tuple[NDArray[np.float64], NDArray[np.float64]]


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
                self.projection = load_projection(m["projection"]["kind"], dict(arrays), projection_file)
            self.index = load_index(store.path(m["index"]["file"]))
            set_search(self.index, dict(m["index"].get("search") or {}))
            ids_file = m["index"].get("ids_file")
            self.ids = np.load(store.path(ids_file)) if ids_file else index_ids(self.index)
            self.index = on_gpu(self.index)
            self.exact_index = m["index"].get("kind", "Flat") == "Flat"
        except (KeyError, TypeError, OSError, ValueError) as exc:
            raise StoreError(f"{store.root}: incomplete manifest or model files ({exc})") from exc
        self.labels = label_matrix(store.db, self.ids.tolist(), self.tag_ids)
        order = np.argsort(self.ids, kind="stable")
        self._sorted_ids, self._row_by_sorted_id = self.ids[order], order.astype(np.int64)
        self.frequency = self.labels.sum(axis=0).astype(np.int64)
        self.defaults: dict[str, Any] = dict(m.get("annotation", {}))
        self.normalization: str = m["projection"].get("normalization", "none")
        self._baselines: dict[str, Baseline] = {}
        self._cnnr: tuple[ImageEncoder, WordIndex, NDArray[np.int64]] | None = None
        self._open_vocabulary: WordIndex | None = None  # every word of the word-vector file, built on first use
        self._standards: dict[str, Standards] = {}

    @classmethod
    def open(cls, store_root: Path) -> AnnotationModel:
        return cls(Store.open(Path(store_root), read_only=True))

    def close(self) -> None:
        self.store.close()

    @cached_property
    def labels_csr(self) -> sparse.csr_matrix:
        """The training tags as a sparse matrix: what pooled scoring (corpora above 20,000 images) reads."""
        return sparse.csr_matrix(self.labels)

    def baseline(self, method: str) -> Baseline:
        """A baseline of the paper's Table 1 on this store's features, loaded (or quickly fitted) once."""
        if method not in self._baselines:
            from annot.retrieval.baselines.stored import load_baseline

            self._baselines[method] = load_baseline(self.store, method, self.ids, self.labels)
        return self._baselines[method]

    def method_params(self, method: str) -> dict[str, Any]:
        """The fitted settings of a baseline or of CNN-R (empty for the CCA methods, whose settings are the store's)."""
        if method == CNNR_METHOD:
            return {k: v for k, v in self._cnnr_entry().items() if k not in ("file", "trained_at")}
        return self.baseline(method).params() if method in BASELINES else {}

    def _cnnr_entry(self) -> dict[str, Any]:
        entry = self.manifest.get("cnnr")
        if not entry:
            raise StoreError(f"{self.store.root}: holds no trained CNN-R; run `annot train-cnnr TRAIN --store {self.store.root}`")
        return dict(entry)

    def cnnr(self) -> tuple[ImageEncoder, WordIndex, NDArray[np.int64]]:
        """CNN-R's regressing encoder and its vocabulary word index (with the words' vocabulary positions)."""
        if self._cnnr is None:
            from annot.cnnr.answer import vocabulary_index
            from annot.cnnr.network import CNNREncoder, load_cnnr, read_model_file

            path = self.store.path(self._cnnr_entry()["file"])
            saved = read_model_file(path)  # read once: the network and the vocabulary's vectors
            model, meta = load_cnnr(path, saved=saved)
            index, positions = vocabulary_index(saved, path, self.vocabulary)
            self._cnnr = (CNNREncoder(model, meta, "vector"), index, positions)
        return self._cnnr

    def encoder_for(self, method: str | None = None) -> ImageEncoder:
        """The image encoder a method reads: CNN-R's own network for ``cnn-r``, else the store's encoder."""
        if self.settings(method)["method"] == CNNR_METHOD:
            return self.cnnr()[0]
        return encoder_of_manifest(self.manifest["encoder"])

    def open_vocabulary(self, V: NDArray[np.floating], n_tags: int) -> list[list[tuple[str, float]]]:
        """CNN-R's regressed vectors answered by the nearest words of the whole word-vector file."""
        from annot.cnnr.answer import open_vocabulary_index

        if self._open_vocabulary is None:
            self._open_vocabulary = open_vocabulary_index(self.manifest["words"]["source"], self.cnnr()[1])
        index = self._open_vocabulary
        similarity, positions = index.nearest(V, n_tags)
        return [[(index.words[int(p)], float(s)) for s, p in zip(srow, prow, strict=True)]
                for srow, prow in zip(similarity, positions, strict=True)]

    def project(self, X: NDArray[np.floating]) -> NDArray[np.float32]:
        """T = (x − μx) W_x, after the store's feature normalisation."""
        return self.projection.transform(normalize_features(X, self.normalization))

    def settings(
        self,
        method: str | None = None,
        n_tags: int | None = None,
        k: int | None = None,
        temperature: float | None = None,
        frequency_power: float | None = None,
        depth: int | None = None,
        k_power: float | None = None,
        score: str | None = None,
    ) -> dict[str, Any]:
        """The annotation settings in effect: each given value, else the store's default. ``depth`` is the candidate
        pool: each query's nearest training images that CCA-KNN and transfer look at (0: all of them for an exact
        index up to 20,000 images, else max(2,000, 50 K): ``pool_depth``). ``score``: CCA-KNN ranks words by Eq. 5
        (``eq5``) or by Eq. 5 standardised per word (``standardized``, :func:`annot.retrieval.scoring.standardize`)."""
        d = self.defaults
        return {
            "score": score or d.get("score", "eq5"),
            "depth": int(depth if depth is not None else (d.get("depth") or 0)),
            "k_power": float(k_power if k_power is not None else (d.get("k_power") or 0.0)),
            "method": method or d.get("method", "cca-knn"),
            "n_tags": int(n_tags or d.get("n_tags", 5)),
            "k": int(k or d.get("k", 8)),
            "temperature": float(temperature or d.get("temperature", 1.0)),
            "frequency_power": float(d.get("frequency_power", 0.0) if frequency_power is None else frequency_power),
        }

    def predict(self, X: NDArray[np.floating], method: str | None = None, **given: Any) -> list[Prediction]:
        """Annotate image features X (n × p) with ``method``; ``given`` are any other of ``settings``' values
        (n_tags, k, temperature, frequency_power, depth, k_power), the rest come from the store."""
        settings = self.settings(method, **given)
        beta = settings["k_power"]
        method, n_tags, k = settings["method"], settings["n_tags"], settings["k"]
        temperature, alpha = settings["temperature"], settings["frequency_power"]
        if method not in METHODS:
            raise AnnotError(f"unknown method {method!r} (known: {', '.join(METHODS)})")
        if settings["score"] not in SCORES:
            raise AnnotError(f"unknown score {settings['score']!r} (known: {', '.join(SCORES)})")
        if n_tags < 1 or k < 1 or temperature <= 0 or settings["depth"] < 0:
            raise AnnotError(f"need n >= 1, k >= 1, temperature > 0 and depth >= 0, got n={n_tags}, k={k}, "
                             f"temperature={temperature}, depth={settings['depth']}")
        if method == CNNR_METHOD:  # X are regressed word vectors: the nearest vocabulary words by cosine
            _, index, positions = self.cnnr()
            similarity, nearest = index.nearest(X, n_tags)
            return [Prediction(positions[row], s.astype(np.float64), [[] for _ in row])
                    for s, row in zip(similarity, nearest, strict=True)]
        if method in BASELINES:
            baseline = self.baseline(method)
            X = normalize_features(X, "l2" if self.normalization == "none" else self.normalization)
            scored, D = baseline.annotate(X, n_tags)
            blank = np.zeros(len(self.ids), np.float32)
            return [self._prediction(s, self.ids, blank if D is None else D[q]) for q, s in enumerate(scored)]
        standards = self.standards(settings) if method == "cca-knn" and settings["score"] in STANDARDIZED else None
        T = self.project(X)
        n = self.index.ntotal
        depth = pool_depth(n, k, settings["depth"], self.exact_index)
        out: list[Prediction] = []
        for lo in range(0, len(T), 256):
            distances, ids = search_correlation(self.index, T[lo : lo + 256], depth)
            if n <= EXACT_NEIGHBOURS:  # small corpora: one dense (queries × images) problem, inf beyond the pool
                D = self._dense(distances, ids)
                scored = score_queries(method, D, self.labels, self.frequency, n_tags, k, temperature, alpha, beta, standards)
                out.extend(self._prediction(s, self.ids, D[q]) for q, s in enumerate(scored))
                continue
            if method == "cca-knn":  # large corpora: each query's own candidate pool, scored as a batch
                out.extend(self._pooled(distances, ids, n_tags, tag_k(k, beta, self.frequency), temperature, alpha,
                                        standards))
                continue
            for d, i in zip(distances, ids, strict=True):
                valid = i >= 0
                d, i = d[valid][None, :], i[valid]
                labels = self.labels[self.rows_of(i)]
                s = score_queries(method, d, labels, self.frequency, n_tags, k, temperature, alpha)[0]
                out.append(self._prediction(s, i, d[0]))
        return out

    def _pooled(self, distances: NDArray[np.float32], ids: NDArray[np.int64], n_tags: int, k: NDArray[np.int64],
                temperature: float, alpha: float, standards: Standards | None = None) -> list[Prediction]:
        out: list[Prediction] = []
        for lo in range(0, len(ids), POOL_BATCH):
            i = ids[lo : lo + POOL_BATCH]
            d, rows = self._pool(distances[lo : lo + POOL_BATCH], i)
            scores, chosen, weights = cca_knn_pooled(d, rows, self.labels_csr, k, temperature, self.frequency, alpha)
            scores, floor = ranking(scores, standards)
            for q in range(len(i)):
                words = top_words(scores[q], self.frequency, n_tags, floor)
                voters = [np.flatnonzero(chosen[q] & self.labels[rows[q], w]) for w in words]
                out.append(self._prediction(Scored(words, scores[q, words], voters, weights[q]), i[q], d[q]))
        return out

    def standards_key(self, settings: dict[str, Any]) -> str:
        """What a word's standards depend on: the scoring settings and the indexed images (the index file's name)."""
        keys = ("k", "k_power", "temperature", "frequency_power", "depth")
        held_out = {"standards": "held-out"} if settings["score"] == "standardized-held-out" else {}
        return json.dumps({"index": self.manifest["index"]["file"], **{k: settings[k] for k in keys}, **held_out},
                          sort_keys=True)

    def standards(self, settings: dict[str, Any]) -> Standards:
        """Each word's mean and spread of its query-normalised CCA-KNN score (``word_standards``) under ``settings``:
        read from the store when it saved them for these settings (``annot index --score standardized``), else
        computed once here from up to ``STANDARDS_SAMPLE`` training images, each scored as a query over the other
        training images exactly as ``predict`` scores a new image. Held-out standards (``standardized-held-out``)
        need the projection fitted again without each hold-out, so only the store's own settings have them."""
        key = self.standards_key(settings)
        if key not in self._standards:
            saved = self.manifest.get("standards") or {}
            if saved.get("key") == key:
                with np.load(self.store.path(saved["file"])) as arrays:
                    self._standards[key] = (arrays["mean"], arrays["spread"])
            elif settings["score"] == "standardized-held-out":
                raise AnnotError(f"{self.store.root}: held-out standards are saved for the store's own settings only "
                                 "(they refit the projection on 5 hold-outs); index with these settings and --score "
                                 "standardized-held-out, or use --score standardized")
            else:
                log.info("computing word standards for %s", key)
                self._standards[key] = word_standards(self.leave_one_out_scores(settings))
        return self._standards[key]

    def leave_one_out_scores(self, settings: dict[str, Any]) -> NDArray[np.float64]:
        """Eq. 5 scores (n × V) of up to ``STANDARDS_SAMPLE`` training images (a fixed random sample), each a query
        whose own row is not among its candidates; the pool, K, β, τ and α are ``settings``'."""
        n = len(self.ids)
        sample = np.sort(np.random.default_rng(0).choice(n, size=min(n, STANDARDS_SAMPLE), replace=False))
        T = self.training_rows(self.ids[sample])
        k = tag_k(settings["k"], settings["k_power"], self.frequency)
        depth = pool_depth(n, settings["k"], settings["depth"], self.exact_index)
        out = np.zeros((len(sample), len(self.vocabulary)), np.float64)
        for lo in range(0, len(T), 256):
            distances, ids = search_correlation(self.index, T[lo : lo + 256], min(depth + 1, n))
            own = ids == self.ids[sample[lo : lo + 256], None]
            distances[own], ids[own] = np.inf, -1
            # the pool without the query's own row (or, where it was not found, without the farthest), still in order
            keep = np.argsort(own, axis=1, kind="stable")[:, :depth]
            distances, ids = np.take_along_axis(distances, keep, 1), np.take_along_axis(ids, keep, 1)
            tau, alpha = settings["temperature"], settings["frequency_power"]
            if n <= EXACT_NEIGHBOURS:
                scores = cca_knn_scores(self._dense(distances, ids), self.labels, k, tau, self.frequency, alpha)[0]
            else:
                scores = cca_knn_pooled(*self._pool(distances, ids), self.labels_csr, k, tau, self.frequency, alpha)[0]
            out[lo : lo + len(ids)] = scores
        return out

    def _dense(self, distances: NDArray[np.float32], ids: NDArray[np.int64]) -> NDArray[np.float32]:
        """Search results (ids < 0: none) as one row per query over every indexed image, inf beyond its pool."""
        D = np.full((len(ids), len(self.ids)), np.inf, np.float32)
        for q in range(len(ids)):
            valid = ids[q] >= 0
            D[q, self.rows_of(ids[q][valid])] = distances[q][valid]
        return D

    def _pool(self, distances: NDArray[np.float32], ids: NDArray[np.int64]) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Search results as ``cca_knn_pooled`` reads them: distances with inf where none, and label-matrix rows."""
        valid = ids >= 0
        rows = self.rows_of(np.where(valid, ids, self._sorted_ids[0]))
        return np.where(valid, distances, np.inf).astype(np.float32), rows

    def training_rows(self, ids: NDArray[np.int64]) -> NDArray[np.float32]:
        """Training images' rows as queries (their T): read back from an exact index of their image projections
        (``--space image``), else projected again from the store's cached features (KCCA: a kernel row each)."""
        if self.exact_index and self.manifest["projection"].get("space", "image") == "image":
            try:
                return np.asarray(self.index.reconstruct_batch(np.ascontiguousarray(ids, np.int64)), np.float32)
            except RuntimeError:  # an index that cannot give its vectors back (e.g. on a GPU)
                pass
        from annot.indexer.features import FeatureCache

        encoder = self.manifest["encoder"]
        X = FeatureCache(self.store.features_dir / encoder["key"], encoder["dim"]).load(ids)
        if np.isnan(X).any():
            raise StoreError(f"{self.store.root}: the features of some training images are not in the store's cache; "
                             "re-run `annot index` to extract them")
        return self.project(X)

    def rows_of(self, ids: NDArray[np.int64]) -> NDArray[np.int64]:
        """Label-matrix rows of indexed image ids."""
        return self._row_by_sorted_id[np.searchsorted(self._sorted_ids, ids)]

    @staticmethod
    def _prediction(s: Scored, candidate_ids: NDArray[np.int64], d: NDArray[np.float32]) -> Prediction:
        votes = [[(int(candidate_ids[c]), float(d[c]), float(s.weights[c])) for c in v[np.argsort(d[v], kind="stable")]]
                 for v in s.voters]  # each word's voters, nearest first
        return Prediction(s.words, s.scores, votes)

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
