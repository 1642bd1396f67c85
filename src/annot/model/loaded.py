"""A store's fitted model, loaded once: the projection, the image index, the indexed images and their tags, and the
annotation methods over them. What ``annot query``, ``annot eval``, the photo library and the server read.

Loading checks what the files hold against each other and the manifest (the index's size against its ids, the
projection's width against the encoder's), so a damaged store is refused by the file's name.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from annot.errors import AnnotError, StoreError
from annot.features.cache import FeatureCache
from annot.features.encoders import ImageEncoder, build_encoder
from annot.features.text import normalize_features
from annot.fitting.calibration import POOL, Calibration, calibration_key
from annot.methods.base import AnnotationMethod, Prediction, method_class
from annot.methods.results import Annotation, TagScore, Vote
from annot.projection import correlation_rows, load_projection
from annot.retrieval.ann import on_gpu, set_search
from annot.retrieval.indexes import index_ids, search_correlation
from annot.schema.queries import image_paths, label_matrix
from annot.settings import ScoringSettings, Space
from annot.store import StoredFile, StoreDir

if TYPE_CHECKING:
    from scipy import sparse

log = logging.getLogger(__name__)


def labels_to_arrays(labels: NDArray[np.bool_]) -> dict[str, NDArray[Any]]:
    """The indexed images' tags (rows in index-id order × vocabulary) as sparse arrays for a store file."""
    rows, columns = np.nonzero(labels)  # row by row, columns ascending: CSR order
    indptr = np.zeros(labels.shape[0] + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=labels.shape[0]), out=indptr[1:])
    return {"indptr": indptr, "indices": columns.astype(np.int32), "shape": np.array(labels.shape, np.int64)}


def labels_from_arrays(arrays: dict[str, NDArray[Any]], source: Path) -> NDArray[np.bool_]:
    try:
        n, V = (int(v) for v in arrays["shape"])
        indptr, indices = np.asarray(arrays["indptr"], np.int64), np.asarray(arrays["indices"], np.int64)
    except (KeyError, ValueError, TypeError) as exc:
        raise StoreError(f"{source}: damaged indexed tags ({exc})") from exc
    counts = np.diff(indptr)
    if (len(indptr) != n + 1 or indptr[0] != 0 or indptr[-1] != len(indices) or (counts < 0).any()
            or (len(indices) and (indices.min() < 0 or indices.max() >= V))):
        raise StoreError(f"{source}: damaged indexed tags (their row pointers or columns do not fit a {n} × {V} matrix)")
    labels = np.zeros((n, V), bool)
    labels[np.repeat(np.arange(n), counts), indices] = True
    return labels


class StoreModel:
    """Everything annotating with a store needs, loaded once from a :class:`annot.store.StoreDir`."""

    def __init__(self, store: StoreDir) -> None:
        self.store = store
        m = self.manifest = store.manifest()
        self.settings = m.settings
        self.vocabulary: list[str] = list(m.vocabulary.words)
        self.tag_ids: list[int] = list(m.vocabulary.tag_ids)
        projection_file = store.path(m.projection.file.path)
        self.projection = load_projection(m.settings.projection.kind, store.read_arrays(m.projection.file, "projection"),
                                          projection_file)
        self._check_projection(projection_file)
        index = store.read_index(m.index.file, "image index")
        set_search(index, dict(m.index.search))
        self.ids: NDArray[np.int64] = np.asarray(store.read_array(m.index.ids, "image ids"), np.int64)
        if self.ids.ndim != 1 or len(self.ids) != index.ntotal or index.ntotal != m.index.ntotal:
            raise StoreError(f"{store.path(m.index.ids.path)}: damaged image ids ({self.ids.size:,} ids for an index of "
                             f"{index.ntotal:,} images; the manifest says {m.index.ntotal:,})")
        self.index = on_gpu(index)
        self.exact_index = m.index.factory == "Flat"
        self.labels = self._indexed_labels(m.index.labels)
        order = np.argsort(self.ids, kind="stable")
        self._sorted_ids, self._row_by_sorted_id = self.ids[order], order.astype(np.int64)
        self.frequency = self.labels.sum(axis=0).astype(np.int64)
        self.normalization = m.settings.projection.normalization.value
        self._methods: dict[str, AnnotationMethod] = {}
        self._encoder: ImageEncoder | None = None
        self._calibration: Calibration | None = None

    @property
    def revision(self) -> str:
        """This state of the model: its projection and image index files, which every change (a correction,
        ``add``, ``remove``, ``refit``, ``index``) writes under new names. Photos scored by another are re-scored."""
        return f"{self.manifest.projection.file.path}+{self.manifest.index.file.path}"

    @classmethod
    def open(cls, root: Path) -> StoreModel:
        """The model of the store at ``root``, opened for reading."""
        store = StoreDir.open(Path(root))
        try:
            return cls(store)
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        self.store.close()

    def _check_projection(self, path: Path) -> None:
        width = getattr(self.projection, "x_weights_", None)
        if width is not None:
            p = width.shape[0]
        else:
            landmarks = getattr(self.projection, "landmarks_", None)
            p = None if landmarks is None else landmarks.shape[1] // 2
        if p is not None and p != self.manifest.encoder.dim:
            raise StoreError(f"{path}: damaged projection (fitted on {p}-d features, the encoder gives "
                             f"{self.manifest.encoder.dim})")

    def _indexed_labels(self, file: StoredFile | None) -> NDArray[np.bool_]:
        """The indexed images' tags as the index holds them (format 2), else as the database has them."""
        if file is None:
            return label_matrix(self.store.db, self.ids.tolist(), self.tag_ids)
        labels = labels_from_arrays(self.store.read_arrays(file, "indexed tags"), self.store.path(file.path))
        if labels.shape != (len(self.ids), len(self.vocabulary)):
            raise StoreError(f"{self.store.path(file.path)}: damaged indexed tags (shape {labels.shape}, expected "
                             f"{(len(self.ids), len(self.vocabulary))})")
        return labels

    @cached_property
    def labels_csr(self) -> sparse.csr_matrix:
        """The training tags as a sparse matrix: what pooled scoring (corpora above 20,000 images) reads."""
        from scipy import sparse

        return sparse.csr_matrix(self.labels)

    # -- what methods read ---------------------------------------------------------------------------------------
    @property
    def upright(self) -> bool:
        """Whether this store's images are turned upright by their EXIF orientation before decoding."""
        return self.manifest.encoder.orientation == "exif"

    def encoder(self) -> ImageEncoder:
        """The store's image encoder (built once)."""
        if self._encoder is None:
            e = self.manifest.encoder
            self._encoder = build_encoder(e.name, Path(e.weights) if e.weights else None)
            if self._encoder.dim != e.dim:
                raise StoreError(f"{self.store.root}: the encoder {e.name} gives {self._encoder.dim}-d features, the "
                                 f"store was built with {e.dim}-d")
        return self._encoder

    def feature_cache(self) -> FeatureCache:
        e = self.manifest.encoder
        return FeatureCache(self.store.features_dir / e.key, e.dim, self.settings.feature_dtype.value, self.upright)

    def project(self, X: NDArray[np.floating]) -> NDArray[np.float32]:
        """T = (x − μx) W_x, after the store's feature normalisation."""
        return self.projection.transform(normalize_features(X, self.normalization))

    def search(self, T: NDArray[np.floating], depth: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        return search_correlation(self.index, T, depth)

    def rows_of(self, ids: NDArray[np.int64]) -> NDArray[np.int64]:
        """Label-matrix rows of indexed image ids."""
        return self._row_by_sorted_id[np.searchsorted(self._sorted_ids, ids)]

    def dense(self, distances: NDArray[np.float32], ids: NDArray[np.int64]) -> NDArray[np.float32]:
        """Search results (ids < 0: none) as one row per query over every indexed image, inf beyond its pool."""
        D = np.full((len(ids), len(self.ids)), np.inf, np.float32)
        queries, positions = np.nonzero(ids >= 0)
        D[queries, self.rows_of(ids[queries, positions])] = distances[queries, positions]
        return D

    @cached_property
    def exact_rows(self) -> NDArray[np.float32] | None:
        """The indexed images' rows of the shared space in label-matrix order, where an exact index on the CPU holds
        them (None otherwise): every distance of a query is then one matrix product, no search."""
        import faiss

        if not self.exact_index:
            return None
        try:
            mapped = faiss.downcast_index(self.index)
            flat = faiss.downcast_index(mapped.index)  # type: ignore[attr-defined]
            if not isinstance(flat, faiss.IndexFlat) or not np.array_equal(index_ids(self.index), self.ids):
                return None
            return np.asarray(flat.reconstruct_n(0, flat.ntotal), np.float32)
        except (AttributeError, RuntimeError):  # not an id-mapped flat index (or one on a GPU)
            return None

    def all_distances(self, T: NDArray[np.floating]) -> NDArray[np.float32] | None:
        """Correlation distances D = 1 − corr of each query row of T to every indexed image (label-matrix order),
        from :attr:`exact_rows`; None where the index does not hold them."""
        rows = self.exact_rows
        if rows is None:
            return None
        return np.asarray(1.0 - correlation_rows(T) @ rows.T, np.float32)

    def pool(self, distances: NDArray[np.float32], ids: NDArray[np.int64]) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Search results as ``cca_knn_pooled`` reads them: distances with inf where none, and label-matrix rows."""
        valid = ids >= 0
        rows = self.rows_of(np.where(valid, ids, self._sorted_ids[0]))
        return np.where(valid, distances, np.inf).astype(np.float32), rows

    def training_rows(self, ids: NDArray[np.int64]) -> NDArray[np.float32]:
        """Training images' rows as queries (their T): read back from an exact index of their image projections
        (``--space image``), else projected again from the store's cached features (KCCA: a kernel row each)."""
        if self.exact_index and self.settings.projection.space is Space.IMAGE:
            try:
                return np.asarray(self.index.reconstruct_batch(np.ascontiguousarray(ids, np.int64)), np.float32)
            except RuntimeError:  # an index that cannot give its vectors back (e.g. on a GPU)
                pass
        X = self.feature_cache().load(ids)
        if np.isnan(X).any():
            raise StoreError(f"{self.store.root}: the features of some training images are not in the store's cache; "
                             "index the store again to extract them")
        return self.project(X)

    # -- methods -------------------------------------------------------------------------------------------------
    def method(self, name: str) -> AnnotationMethod:
        """An annotation method over this store, opened once."""
        if name not in self._methods:
            self._methods[name] = method_class(name).open(self)
        return self._methods[name]

    def calibration(self, scoring: ScoringSettings) -> Calibration | None:
        """The confidence calibration for ``scoring``, where the store has one for these settings."""
        record = self.manifest.calibration
        if record is None or record.key != calibration_key(self.settings.replace(scoring=scoring)):
            return None
        if self._calibration is None:
            self._calibration = Calibration.from_arrays(self.store.read_arrays(record.file, "confidence calibration"),
                                                        dict(record.measured))
        return self._calibration

    def confidence_cut(self, scoring: ScoringSettings) -> float | None:
        """The confidence a tag must reach under ``scoring`` (``auto``: the calibration's cut), or None for none."""
        if scoring.min_confidence is None:
            return None
        if scoring.min_confidence != "auto":
            return float(scoring.min_confidence)
        calibration = self.calibration(scoring)
        if calibration is None:
            raise AnnotError(f"{self.store.root}: --min-confidence auto needs the store's confidence calibration, "
                             f"which it has for its own {self.settings.scoring.method} settings only")
        return calibration.cut

    def predict(self, X: NDArray[np.floating], scoring: ScoringSettings, exclude: NDArray[np.int64] | None = None,
                ) -> list[Prediction]:
        """Annotate features X (read with ``method(scoring.method).encoder()``) with ``scoring``; each word with its
        calibrated confidence where the store has a calibration for these settings. With ``min_confidence``, every
        word of the ``POOL`` best that reaches it."""
        method = self.method(scoring.method)
        calibration = self.calibration(scoring)
        if scoring.min_confidence is None:
            predictions = method.predict(X, scoring, exclude)
            if calibration is None:
                return predictions
            return [replace(p, confidence=calibration.confidence(p.words, p.scores)) for p in predictions]
        if calibration is None:
            raise AnnotError(f"{self.store.root}: --min-confidence needs the store's confidence calibration, which it "
                             f"has for its own {self.settings.scoring.method} settings only (annot index makes it)")
        cut = self.confidence_cut(scoring)
        assert cut is not None
        out = []
        for p in method.predict(X, scoring.replace(n_tags=max(scoring.n_tags, POOL)), exclude):
            confidence = calibration.confidence(p.words, p.scores)
            keep = np.flatnonzero(confidence >= cut)
            out.append(Prediction(p.words[keep], p.scores[keep], [p.votes[int(i)] for i in keep], confidence[keep]))
        return out

    def annotations(self, names: Sequence[str], predictions: Sequence[Prediction], explain: bool = False,
                    ) -> list[Annotation]:
        """Typed results with tag names and confidence, and with ``explain`` the voting training images and their
        paths."""
        paths: dict[int, str] = {}
        if explain:
            voters = {v[0] for p in predictions for word_votes in p.votes for v in word_votes}
            paths = image_paths(self.store.db, sorted(voters))
        out = []
        for name, p in zip(names, predictions, strict=True):
            sure = p.confidence.tolist() if p.confidence is not None else [None] * len(p.words)
            tags = tuple(
                TagScore(self.vocabulary[int(w)], float(s), None if c is None else float(c),
                         tuple(Vote(i, paths.get(i, ""), dist, wt) for i, dist, wt in votes) if explain else ())
                for w, s, votes, c in zip(p.words, p.scores, p.votes, sure, strict=True)
            )
            out.append(Annotation(name, tags))
        return out
