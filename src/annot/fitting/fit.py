"""The one fitting path: from training images' features and tags to a fitted projection and their rows in the shared
space. ``annot index`` (:func:`fit_streamed` for linear CCA, :func:`fit_in_memory` for KCCA), cross-validation
(:class:`FoldFitter`, for ``annot tune`` and held-out standards) and the benchmarks all fit here, with the same text
view, feature normalisation, usable images and estimator settings.

Cross-validation fits many candidates on a few folds, so :class:`FoldFitter` keeps what they share: the feature
normalisations, the χ² kernel among all training images (computed once; other widths by powers of it), each fold's
kernel eigendecomposition (shared by every ridge) and text-kernel map. A fold's model is the one ``annot index`` fits
on the fold's images with the same settings: exact KCCA where the store's would be exact (``auto`` up to
``EXACT_LIMIT`` images), Nyström landmarks above. The kernel width's scale (the mean χ² distance) is measured once on
all training images' features, without their tags, so that every fold shares one kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from annot.errors import AnnotError, CorpusError
from annot.features.cache import FeatureCache
from annot.features.text import normalize_features, text_view, usable_rows
from annot.features.words import WordVectors
from annot.projection import (
    CCAStatistics,
    KernelCCA,
    LinearCCA,
    Projection,
    build_projection,
    correlation_rows,
    linear_cca,
    space_rows,
)
from annot.projection.kcca import EXACT_LIMIT, chi2_input, chi2_kernel, default_gamma
from annot.projection.kernels import kernel_map
from annot.projection.text_kernel import TextMap
from annot.schema.queries import label_matrix
from annot.settings import ProjectionKind, ProjectionSettings, TextView
from annot.store import StoreDir

Chunk = tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.bool_]]  # (image ids, features, tags)
Chunks = Callable[[], Iterator[Chunk]]
CHUNK_ROWS = 16_384  # rows per chunk: about 0.5 GB of working memory at 2,048 features
KERNEL_MEMORY = 8 << 30  # bytes the exact kernel among all training images may take in cross-validation


@dataclass(frozen=True)
class TrainingSet:
    """A store's training images as arrays: ids, raw features X, tags (n × V), word vectors E (V × q)."""

    image_ids: NDArray[np.int64]
    X: NDArray[np.float32]
    labels: NDArray[np.bool_]
    vocabulary: tuple[str, ...]
    tag_ids: tuple[int, ...]
    E: NDArray[np.float32]
    has_vector: NDArray[np.bool_]


def word_matrix(words: WordVectors, vocabulary: tuple[str, ...]) -> tuple[NDArray[np.float32], NDArray[np.bool_], list[str]]:
    """E (V × q), which words have a vector, and the words without one."""
    E, missing = words.matrix(vocabulary)
    gone = set(missing)
    return E, np.array([w not in gone for w in vocabulary], bool), missing


def load_training_set(store: StoreDir, cache: FeatureCache, ids: NDArray[np.int64], vocabulary: tuple[str, ...],
                      tag_ids: tuple[int, ...], words: WordVectors) -> TrainingSet:
    """The images ``ids`` (decodable, with at least one vocabulary tag) with their cached features and tags."""
    failed = set(cache.failures())
    ids = np.array([i for i in ids.tolist() if i not in failed], np.int64)
    labels = label_matrix(store.db, ids.tolist(), list(tag_ids))
    keep = labels.any(axis=1)
    ids, labels = ids[keep], labels[keep]
    X = cache.load(ids) if len(ids) else np.zeros((0, cache.dim), np.float32)
    E, has_vector, _ = word_matrix(words, vocabulary)
    return TrainingSet(ids, X, labels, vocabulary, tag_ids, E, has_vector)


def training_chunks(store: StoreDir, cache: FeatureCache, image_ids: NDArray[np.int64], tag_ids: list[int],
                    chunk_rows: int = CHUNK_ROWS) -> Iterator[Chunk]:
    """(ids, features, tags) of ``image_ids`` in cache order, ``chunk_rows`` at a time: features from the memory-mapped
    cache, tags from the database, never the whole corpus in memory."""
    wanted = np.sort(np.asarray(image_ids, np.int64))
    ids_buffer: list[NDArray[np.int64]] = []
    x_buffer: list[NDArray[np.float32]] = []
    buffered = 0

    def flush() -> Chunk:
        ids = np.concatenate(ids_buffer)
        X = np.concatenate(x_buffer)
        ids_buffer.clear()
        x_buffer.clear()
        return ids, X, label_matrix(store.db, ids.tolist(), tag_ids)

    for ids, x in cache.iter_parts():
        rows = np.flatnonzero(np.isin(ids, wanted))
        for lo in range(0, len(rows), chunk_rows):
            sel = rows[lo : lo + chunk_rows]
            ids_buffer.append(ids[sel])
            x_buffer.append(np.asarray(x[sel], np.float32))
            buffered += len(sel)
            if buffered >= chunk_rows:
                yield flush()
                buffered = 0
    if ids_buffer:
        yield flush()


# -- the views of a chunk of images --------------------------------------------------------------------------------
def chunk_statistics(X: NDArray[np.float32], labels: NDArray[np.bool_], E: NDArray[np.float32],
                     has_vector: NDArray[np.bool_], view: str, normalization: str,
                     ) -> tuple[CCAStatistics | None, NDArray[np.bool_]]:
    """One chunk's sufficient statistics over its usable images (None when it has none), and which rows those are."""
    keep = usable_rows(labels, has_vector, view)
    if not keep.any():
        return None, keep
    return CCAStatistics.of(normalize_features(X[keep], normalization), text_view(labels[keep], E, has_vector, view)), keep


def chunk_rows(projection: Projection, X: NDArray[np.float32], labels: NDArray[np.bool_], E: NDArray[np.float32],
               has_vector: NDArray[np.bool_], view: str, normalization: str, space: str,
               ) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """One chunk's usable images as rows of the shared space (``space``: see :func:`annot.projection.space_rows`),
    and which rows of the chunk those are."""
    keep = usable_rows(labels, has_vector, view)
    U = projection.transform(normalize_features(X[keep], normalization))
    return space_rows(U, lambda: projection.transform_y(text_view(labels[keep], E, has_vector, view)), space), keep


def streamed_statistics(chunks: Chunks, E: NDArray[np.float32], has_vector: NDArray[np.bool_], view: str,
                        normalization: str) -> tuple[CCAStatistics | None, int, int]:
    """Pass 1 over the chunks: the sufficient statistics of the usable images; how many were used and left out."""
    stats: CCAStatistics | None = None
    used = untagged = 0
    for _, X, labels in chunks():
        chunk, keep = chunk_statistics(X, labels, E, has_vector, view, normalization)
        untagged += int((~keep).sum())
        used += int(keep.sum())
        if chunk is not None:
            stats = chunk if stats is None else stats + chunk
    return stats, used, untagged


def project_to_file(chunks: Chunks, projection: Projection, E: NDArray[np.float32], has_vector: NDArray[np.bool_],
                    view: str, normalization: str, space: str, n: int, k: int, path: Path,
                    advance: Callable[[int], None] | None = None) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Pass 2: the usable images' rows in the shared space, in an (n × k) .npy file read back memory-mapped, and their
    ids."""
    ids_out = np.empty(n, np.int64)
    at = 0
    with open(path, "wb") as fh:  # plain appends: written pages do not stay in this process's memory
        np.lib.format.write_array_header_2_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (n, k)})
        for ids, X, labels in chunks():
            rows, keep = chunk_rows(projection, X, labels, E, has_vector, view, normalization, space)
            fh.write(np.ascontiguousarray(rows, "<f4").tobytes())
            ids_out[at : at + len(rows)] = ids[keep]
            at += len(rows)
            if advance:
                advance(len(ids))
    if at != n:
        raise AnnotError(f"{path}: projected {at} rows, expected {n}; the store's tags changed under the fit")
    return np.load(path, mmap_mode="r"), ids_out


# -- fitting ----------------------------------------------------------------------------------------------------------
def fit_streamed(chunks: Chunks, E: NDArray[np.float32], has_vector: NDArray[np.bool_], view: TextView,
                 settings: ProjectionSettings, statistics: Callable[..., tuple[CCAStatistics | None, int, int]]
                 = streamed_statistics) -> tuple[LinearCCA, CCAStatistics, int, int]:
    """Linear CCA from one streamed pass of sufficient statistics (``statistics``: the local pass, or the same on a
    Ray cluster); returns the projection, the statistics, and how many images were used and left out untagged."""
    stats, used, untagged = statistics(chunks, E, has_vector, view.value, settings.normalization.value)
    if stats is None or used < 2:
        raise CorpusError(f"fewer than 2 usable tagged training images ({used}); nothing to fit")
    return linear_cca(settings).fit_statistics(stats), stats, used, untagged


def fit_in_memory(X: NDArray[np.float32], labels: NDArray[np.bool_], E: NDArray[np.float32],
                  has_vector: NDArray[np.bool_], view: TextView, settings: ProjectionSettings,
                  ) -> tuple[Projection, NDArray[np.float32], NDArray[np.bool_]]:
    """The projection fitted on the usable rows of (X, labels); the shared-space rows of those images (``space``) and
    which rows they are."""
    keep = usable_rows(labels, has_vector, view.value)
    if keep.sum() < 2:
        raise CorpusError(f"fewer than 2 usable tagged training images ({int(keep.sum())}); nothing to fit")
    Xn = normalize_features(X[keep], settings.normalization.value)
    Y = text_view(labels[keep], E, has_vector, view.value)
    projection = build_projection(settings)
    U = projection.fit_transform(Xn, Y)
    return projection, space_rows(U, lambda: projection.transform_y(Y), settings.space.value), keep


def is_exact(settings: ProjectionSettings, n: int) -> bool:
    """Whether KCCA with these settings is exact on ``n`` fitting images (its kernel among all of them)."""
    if settings.landmarks == "all":
        return True
    if settings.landmarks == "auto":
        return n <= EXACT_LIMIT
    return int(settings.landmarks) >= n


@dataclass(frozen=True)
class FoldFit:
    """A fold's fit: the fitting images' image projections U and text projections V, the held-out images' rows T
    (correlation rows), and which fitting rows were usable (``keep``, rows of the training set)."""

    U: NDArray[np.floating]
    V: NDArray[np.floating]
    T: NDArray[np.float32]
    keep: NDArray[np.int64]


class FoldFitter:
    """Fits projections on folds of one training set (X, labels, E), sharing what candidates and folds share."""

    def __init__(self, X: NDArray[np.float32], labels: NDArray[np.bool_], E: NDArray[np.float32],
                 has_vector: NDArray[np.bool_]) -> None:
        self.X, self.labels, self.E, self.has_vector = X, labels, E, has_vector
        self._normalized: dict[str, NDArray[np.float32]] = {}
        self._kernels: dict[tuple[str, float], tuple[NDArray[np.float64], float, NDArray[np.float64]]] = {}
        self._maps: dict[tuple[Any, ...], tuple[NDArray[np.float64], tuple[NDArray[np.float64], NDArray[np.float64]],
                                                NDArray[np.float64]]] = {}
        self._text_maps: dict[tuple[Any, ...], TextMap | None] = {}

    def normalized(self, normalization: str) -> NDArray[np.float32]:
        if normalization not in self._normalized:
            self._normalized[normalization] = normalize_features(self.X, normalization)
        return self._normalized[normalization]

    def fit(self, fit_rows: NDArray[np.int64], held_rows: NDArray[np.int64], view: TextView,
            settings: ProjectionSettings) -> FoldFit:
        """Fit on the usable ``fit_rows`` and project ``held_rows``."""
        labels, E, has_vector = self.labels, self.E, self.has_vector
        keep = fit_rows[usable_rows(labels[fit_rows], has_vector, view.value)]
        Xn = self.normalized(settings.normalization.value)
        Y = text_view(labels[keep], E, has_vector, view.value)
        if settings.kind is ProjectionKind.KCCA and is_exact(settings, len(keep)):
            return self._fit_exact_kcca(keep, held_rows, Xn, Y, view, settings)
        projection = build_projection(settings)
        U = projection.fit_transform(Xn[keep], Y)
        return FoldFit(U, projection.transform_y(Y), correlation_rows(projection.transform(Xn[held_rows])), keep)

    def _fit_exact_kcca(self, keep: NDArray[np.int64], held: NDArray[np.int64], Xn: NDArray[np.float32],
                        Y: NDArray[np.float32], view: TextView, settings: ProjectionSettings) -> FoldFit:
        Xk, gamma, K = self._kernel(settings.normalization.value, settings.gamma_scale, Xn)
        key = (settings.normalization, settings.gamma_scale, keep.tobytes(), held.tobytes())
        if key not in self._maps:  # one eigendecomposition per fold and kernel, shared by every ridge
            eigen = kernel_map(K[np.ix_(keep, keep)])
            self._maps[key] = (Xk[keep], eigen, K[np.ix_(held, keep)] @ eigen[1])
        landmarks, eigen, held_map = self._maps[key]
        model = KernelCCA(settings.n_components, settings.reg, settings.reg, n_landmarks=None, negative="split",
                          text_kernel=settings.text_kernel.value, text_gamma_scale=settings.text_gamma_scale)
        text_key = (view, settings.text_kernel, settings.text_gamma_scale, keep.tobytes())
        if text_key not in self._text_maps:  # one text kernel map per fold, view and kernel
            self._text_maps[text_key] = model.fit_text(Y)
        text_map = self._text_maps[text_key]
        model.fit_exact(landmarks, gamma, eigen, Y, text_map)
        U = model.cca_.transform(model.map_ * model.eigenvalues_)
        V = model.cca_.transform_y(text_map.landmark_rows() if text_map is not None else Y)
        return FoldFit(U, V, correlation_rows(model.cca_.transform(held_map)), keep)

    def _kernel(self, normalization: str, scale: float, Xn: NDArray[np.float32],
                ) -> tuple[NDArray[np.float64], float, NDArray[np.float64]]:
        """The training set's χ² kernel at ``scale`` × the default γ: computed once per normalisation, other widths by
        powers of it (exp(−sγd) = exp(−γd)^s)."""
        if (normalization, 1.0) not in self._kernels:
            n = len(Xn)
            if 8 * n * n > KERNEL_MEMORY:
                raise AnnotError(f"exact KCCA cross-validation over {n:,} training images needs their "
                                 f"{8 * n * n / 2**30:.1f} GB kernel; use landmarks (--landmarks 2000) for KCCA")
            Xk = chi2_input(Xn, "split")
            gamma = default_gamma(Xk)
            self._kernels[normalization, 1.0] = (Xk, gamma, chi2_kernel(Xk, Xk, gamma))
        if (normalization, scale) not in self._kernels:
            Xk, gamma, K = self._kernels[normalization, 1.0]
            self._kernels[normalization, scale] = (Xk, gamma * scale, K**scale)
        return self._kernels[normalization, scale]
