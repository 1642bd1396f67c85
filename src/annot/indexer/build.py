"""``annot index``: the pipeline from a tagged corpus file to a complete store.

Stages (each timed): read the corpus and check every setting, import it into the database, extract features
(resumable), build the text view, fit the projection (:mod:`annot.fitting.fit`), write the indexes, then switch the
manifest. Models and indexes are written under new names and the manifest, written last and atomically, switches to
them: a crash at any point leaves the previous store readable, and a rerun with the same arguments extracts only the
features still missing. Everything a user can get wrong is refused before anything is written.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from sqlalchemy import select

from annot.errors import AnnotError, WordVectorError
from annot.features.cache import FeatureCache
from annot.features.encoders import ImageEncoder, build_encoder, resolve_encoder_name
from annot.features.text import word_view
from annot.features.words import WordVectors, load_word_vectors
from annot.fitting.fit import fit_in_memory, fit_streamed, project_to_file, training_chunks, word_matrix
from annot.indexer.corpus import Corpus, keep_frequent, read_corpus, read_vocabulary
from annot.indexer.distributed import connect, statistics_with_ray
from annot.indexer.extract import extract_features, feature_cache
from annot.indexer.importer import TRAIN, tag_ids
from annot.indexer.keywords import KeywordSummary, photo_folder_corpus
from annot.indexer.standards import CALIBRATED, TrainingSet, save_calibration, save_standards
from annot.inputs import LISTS
from annot.methods.base import method_class
from annot.model.loaded import labels_to_arrays
from annot.progress import NoProgress, Progress
from annot.projection import KernelCCA, LinearCCA
from annot.projection.cca import CCAStatistics
from annot.projection.kcca import EXACT_LIMIT
from annot.retrieval.ann import (
    ADD_CHUNK,
    RECALL_QUERIES,
    IndexInfo,
    Tagger,
    build_ann,
    check_factory,
    choose_factory,
    pool_depth,
    train_sample_size,
    tune_search,
)
from annot.retrieval.indexes import build_flat_index
from annot.retrieval.scoring import pooled_tagger
from annot.schema import image_tags, images, tags
from annot.schema.queries import label_matrix
from annot.settings import BuildSettings, ProjectionKind, Score, ScoringSettings, SettingsError, TextSettings, TextView
from annot.store import StoredFile, StoreDir, remove_stale_scratch
from annot.store.manifest import (
    Counts,
    EncoderRecord,
    IndexRecord,
    Manifest,
    ProjectionRecord,
    VocabularyRecord,
    WordIndexRecord,
    WordsRecord,
)

log = logging.getLogger(__name__)

HELD_OUT_LINEAR_LIMIT = 50_000  # training images: each hold-out's dense distances to its fitting images stay in memory


@dataclass
class IndexReport:
    store: Path
    n_images: int = 0
    n_indexed: int = 0
    n_words: int = 0
    extracted: int = 0
    cached: int = 0
    unreadable: dict[str, str] = field(default_factory=dict)
    duplicates: dict[str, str] = field(default_factory=dict)
    untagged: int = 0
    missing_word_vectors: list[str] = field(default_factory=list)
    dropped_tags: dict[str, int] = field(default_factory=dict)
    canonical_correlations: list[float] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    keywords: KeywordSummary | None = None  # a folder of photos: what reading their keywords found
    words_left_out: dict[str, int] = field(default_factory=dict)  # words on fewer images than min_photos
    words: list[str] = field(default_factory=list)  # the words the corpus gave (before those without a vector)

    def to_dict(self) -> dict[str, Any]:
        return {"store": str(self.store), "images": self.n_images, "indexed": self.n_indexed, "words": self.n_words,
                "extracted": self.extracted, "cached": self.cached, "unreadable": self.unreadable,
                "content_duplicates": self.duplicates, "untagged": self.untagged,
                "missing_word_vectors": self.missing_word_vectors, "tags_outside_vocabulary": self.dropped_tags,
                "keywords": None if self.keywords is None else self.keywords.to_dict(),
                "words_left_out": self.words_left_out, "vocabulary": self.words, "seconds": self.seconds}


class _Timer:
    def __init__(self, seconds: dict[str, float], stage: str) -> None:
        self.seconds, self.stage = seconds, stage

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.seconds[self.stage] = round(self.seconds.get(self.stage, 0.0) + time.perf_counter() - self.start, 3)


def text_width(view: TextView, word_dim: int, n_words: int) -> int:
    """The width q of the text view Y."""
    return {TextView.W2V: word_dim, TextView.BV: n_words, TextView.W2V_BV: word_dim + n_words}[view]


def check_settings(settings: BuildSettings, encoder: ImageEncoder, words: WordVectors, n_words: int,
                   n_images: int) -> None:
    """Refuse settings the fit or the index would refuse, before any feature is extracted."""
    p, q = encoder.dim, text_width(settings.text.view, words.dim, n_words)
    projection = settings.projection
    upper = min(p, q) if projection.kind is ProjectionKind.LINEAR else q if projection.text_kernel.value == "linear" \
        else None
    if projection.n_components is not None and upper is not None and projection.n_components > upper:
        raise SettingsError("projection.n_components", f"must be <= {upper} (the smaller of the image features' "
                            f"{p} and the text view's {q} dimensions), got {projection.n_components}")
    if settings.index.kind != "auto":
        dims = projection.n_components or upper or min(p, q)
        check_factory(settings.index.kind, dims)
    if settings.scoring.score is Score.HELD_OUT:
        check_held_out_size(projection.kind, n_images, projection.landmarks)
    method = settings.scoring.method
    if method_class(method).trained:
        raise SettingsError("scoring.method", f"{method} must be fitted after indexing (annot fit / annot train-cnnr), "
                            "so it cannot be the store's default method")


def check_held_out_size(projection: ProjectionKind, n: int, landmarks: str | int = "auto") -> None:
    """Refuse held-out standards (``--score standardized-held-out``) where refitting the projection per hold-out,
    with dense distances as cross-validation computes them, would not fit in memory."""
    exact_kcca = projection is ProjectionKind.KCCA and (landmarks == "all" or (landmarks == "auto" and n > EXACT_LIMIT))
    limit = EXACT_LIMIT if exact_kcca and landmarks == "auto" else HELD_OUT_LINEAR_LIMIT
    if n > limit:
        raise SettingsError("scoring.score", f"standardized-held-out refits the {projection} projection on five "
                            f"hold-outs: at most {limit:,} training images, not {n:,}; use standardized")


def training_ids(store: StoreDir) -> NDArray[np.int64]:
    with store.db.connect() as conn:
        return np.array([int(i) for (i,) in conn.execute(select(images.c.id).where(images.c.split == TRAIN)
                                                         .order_by(images.c.id))], np.int64)


def store_vocabulary(store: StoreDir, given: tuple[str, ...] | None) -> tuple[str, ...]:
    """The ``--vocabulary`` words when given, else every word on the store's training images."""
    if given is not None:
        return given
    with store.db.connect() as conn:
        query = (select(tags.c.word).distinct()
                 .select_from(tags.join(image_tags, tags.c.id == image_tags.c.tag_id)
                              .join(images, images.c.id == image_tags.c.image_id))
                 .where(images.c.split == TRAIN))
        return tuple(sorted(w for (w,) in conn.execute(query)))


def annotation_tagger(labels: NDArray[np.bool_], scoring: ScoringSettings) -> Tagger:
    """CCA-KNN's tags from candidate pools of index rows with the store's scoring settings: what an approximate
    index's search setting must agree on (``tune_search``). ``labels`` are the indexed images' tags in index order."""
    frequency = labels.sum(axis=0).astype(np.int64)
    return pooled_tagger(sparse.csr_matrix(labels), frequency, scoring.k, scoring.temperature, scoring.frequency_power)


def build_image_index(factory: str, rows: NDArray[np.float32], ids: NDArray[np.int64], progress: Progress,
                      k: int = 16, depth: int = 0, labels: NDArray[np.bool_] | None = None,
                      scoring: ScoringSettings | None = None, agreement: float = 0.9) -> tuple[Any, IndexInfo]:
    """The image index over correlation rows: trained on a sample when it needs training, filled in chunks, and its
    search setting tuned on held-out queries over the annotation pool (``pool_depth`` of K and ``depth``): to agree
    with the exact pool's tags (with ``labels`` and ``scoring``), or else to the recall target."""
    rng = np.random.default_rng(0)
    n = len(ids)
    path = Path(rows.filename) if isinstance(rows, np.memmap) and rows.filename else None

    def chunks() -> Iterator[tuple[NDArray[np.float32], NDArray[np.int64]]]:
        for lo in range(0, n, ADD_CHUNK):  # a fresh mapping per chunk: read pages do not pile up in memory
            source = np.load(path, mmap_mode="r") if path else rows
            yield np.array(source[lo : lo + ADD_CHUNK]), ids[lo : lo + ADD_CHUNK]
            del source

    sample = np.asarray(rows[np.sort(rng.choice(n, size=train_sample_size(factory, n), replace=False))])
    with progress.task(f"index {factory}", n) as advance:
        index = build_ann(factory, rows.shape[1], chunks, sample, advance)
    if factory == "Flat":
        return index, IndexInfo(factory, {}, None)
    tagger = None
    if labels is not None and scoring is not None:
        order = np.argsort(ids, kind="stable")
        sorted_ids, score = ids[order], annotation_tagger(labels, scoring)

        def tagger(D: NDArray[np.float32], found: NDArray[np.int64]) -> NDArray[np.int64]:
            where = np.clip(np.searchsorted(sorted_ids, found), 0, len(ids) - 1)
            return score(D, np.where(found >= 0, order[where], -1))

    picked = np.sort(rng.choice(n, size=min(n, RECALL_QUERIES), replace=False))
    pool = pool_depth(n, k, depth, exact=False)
    with progress.task(f"tuning the search of {factory} over {pool:,}-image pools", None):
        info = tune_search(index, factory, chunks, np.asarray(rows[picked]), ids[picked], pool, tagger, agreement)
    return index, info


def build_word_index(projection: LinearCCA | KernelCCA, E: NDArray[np.float32], has_vector: NDArray[np.bool_],
                     view: TextView, vocab_ids: list[int]) -> Any:
    """The vocabulary in the shared space, Z = E W_y, as an exact index whose ids are tag ids (the words the text
    view can represent: for W2V those with a vector)."""
    word_rows = np.flatnonzero(has_vector) if view is TextView.W2V else np.arange(len(vocab_ids))
    Z = projection.transform_y(word_view(E, view.value)[word_rows])
    return build_flat_index(Z, np.array(vocab_ids, np.int64)[word_rows])


def short_hash(*arrays: NDArray[Any]) -> str:
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()[:12]


def store_upright(store: StoreDir, settings: BuildSettings) -> bool:
    """Whether to turn images upright before decoding: yes, except in a version-1 store re-indexed with its own
    encoder, which keeps its decoding and so its cached features."""
    if store.has_manifest():
        previous = store.manifest()
        if previous.encoder.name == resolve_encoder_name(settings.encoder.name):
            return previous.encoder.orientation == "exif"
    return True


@dataclass(frozen=True)
class _Fitted:
    projection: LinearCCA | KernelCCA
    statistics: CCAStatistics | None  # linear CCA's sufficient statistics (kept for add, remove, refit)
    rows: NDArray[np.float32]  # the training images' rows of the shared space
    train_ids: NDArray[np.int64]


@dataclass(frozen=True)
class _Indexes:
    tag: str
    info: Any  # the image index's factory, search and tuning
    word_index: Any
    stored: tuple[StoredFile, StoredFile | None, StoredFile, StoredFile, StoredFile, StoredFile]


def _fit(store: StoreDir, settings: BuildSettings, cache: FeatureCache, candidates: NDArray[np.int64],
         vocab_ids: list[int], E: NDArray[np.float32], has_vector: NDArray[np.bool_], report: IndexReport,
         progress: Progress, scratch: Path) -> _Fitted:
    """The projection fitted on the training images (linear CCA streamed from statistics, kernel CCA in memory),
    and their rows of the shared space (linear: projected through ``scratch``)."""
    seconds, view, projection_settings = report.seconds, settings.text.view, settings.projection
    if projection_settings.kind is not ProjectionKind.LINEAR:
        with _Timer(seconds, "fit"), progress.task("fitting kernel CCA", None):
            labels_all = label_matrix(store.db, candidates.tolist(), vocab_ids)
            fitted, rows, keep = fit_in_memory(cache.load(candidates), labels_all, E, has_vector, view,
                                               projection_settings)
            assert isinstance(fitted, KernelCCA | LinearCCA)
            report.untagged = int((~keep).sum())
            return _Fitted(fitted, None, rows, candidates[keep])

    def chunks() -> Iterator[tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.bool_]]]:
        return training_chunks(store, cache, candidates, vocab_ids)

    with _Timer(seconds, "fit"), progress.task("statistics pass", None):
        if settings.ray:
            ray = connect(settings.ray)
            projection, stats, used, report.untagged = fit_streamed(
                chunks, E, has_vector, view, projection_settings, lambda *a: statistics_with_ray(ray, *a))
        else:
            projection, stats, used, report.untagged = fit_streamed(chunks, E, has_vector, view, projection_settings)
    with _Timer(seconds, "project"), progress.task("projecting", len(candidates)) as advance:
        scratch.parent.mkdir(parents=True, exist_ok=True)
        rows, train_ids = project_to_file(chunks, projection, E, has_vector, view.value,
                                          projection_settings.normalization.value, projection_settings.space.value,
                                          used, len(projection.canonical_correlations_), scratch, advance)
    return _Fitted(projection, stats, rows, train_ids)


def _write_indexes(store: StoreDir, settings: BuildSettings, fitted: _Fitted, vocab_ids: list[int],
                   E: NDArray[np.float32], has_vector: NDArray[np.bool_], progress: Progress) -> _Indexes:
    """The image and word indexes built and written with the projection, under names of their content."""
    projection, rows, train_ids = fitted.projection, fitted.rows, fitted.train_ids
    labels = label_matrix(store.db, train_ids.tolist(), vocab_ids)
    factory = settings.index.kind
    if factory == "auto":
        factory = choose_factory(len(train_ids), rows.shape[1], settings.index.budget_bytes)
    image_index, info = build_image_index(factory, rows, train_ids, progress, settings.scoring.k,
                                          settings.scoring.depth, labels, settings.scoring,
                                          settings.index.tag_agreement)
    word_index = build_word_index(projection, E, has_vector, settings.text.view, vocab_ids)
    tag = short_hash(train_ids, *projection.to_arrays().values())
    stored = (store.save_arrays(f"models/projection-{tag}.npz", projection.to_arrays()),
              None if fitted.statistics is None else store.save_arrays(f"models/statistics-{tag}.npz",
                                                                       fitted.statistics.to_arrays()),
              store.save_index(f"indexes/images-{tag}.faiss", image_index),
              store.save_array(f"indexes/images-{tag}.ids.npy", train_ids),
              store.save_arrays(f"indexes/images-{tag}.tags.npz", labels_to_arrays(labels)),
              store.save_index(f"indexes/words-{tag}.faiss", word_index))
    return _Indexes(tag, info, word_index, stored)


def write_model(store: StoreDir, settings: BuildSettings, encoder: ImageEncoder, words: WordVectors,
                vocabulary: tuple[str, ...], report: IndexReport, progress: Progress, upright: bool) -> None:
    """Fit the projection on the store's training images, write the indexes and switch the manifest (the model part
    of ``annot index``; ``annot tune`` rebuilds with it)."""
    seconds = report.seconds
    previous = store.manifest() if store.has_manifest() else None
    cache = feature_cache(store, encoder, settings.feature_dtype.value, upright)
    with _Timer(seconds, "text view"):
        vocab_ids = [tag_ids(store, vocabulary, create=True)[w] for w in vocabulary]
        E, has_vector, missing = word_matrix(words, vocabulary)
        if settings.strict and missing:
            raise WordVectorError(f"{words.source}: no vector for {len(missing)} tags: {', '.join(missing[:10])}")
    report.missing_word_vectors = missing
    failed = set(cache.failures())
    candidates = np.array([i for i in training_ids(store).tolist() if i not in failed], np.int64)
    remove_stale_scratch(store.indexes_dir, ".projected-*.npy")  # a killed pass's
    scratch = store.indexes_dir / f".projected-{os.getpid()}.npy"
    try:
        fitted = _fit(store, settings, cache, candidates, vocab_ids, E, has_vector, report, progress, scratch)
        projection, train_ids = fitted.projection, fitted.train_ids
        with _Timer(seconds, "indexes"):
            files = _write_indexes(store, settings, fitted, vocab_ids, E, has_vector, progress)
    finally:
        scratch.unlink(missing_ok=True)
    tag, info, word_index = files.tag, files.info, files.word_index
    projection_file, statistics_file, index_file, ids_file, labels_file, words_file = files.stored
    correlations = tuple(round(float(c), 6) for c in projection.canonical_correlations_)
    weights = settings.encoder.weights
    manifest = Manifest(
        settings=settings,
        encoder=EncoderRecord(resolve_encoder_name(settings.encoder.name), cache.folder.name, encoder.dim,
                              str(Path(weights).resolve()) if weights else None, "exif" if upright else "none"),
        words=WordsRecord(words.source, words.dim),
        projection=ProjectionRecord(projection_file, len(correlations), correlations, statistics_file),
        index=IndexRecord(index_file, ids_file, info.factory, len(train_ids), labels_file, info.search, info.tuning()),
        word_index=WordIndexRecord(words_file, int(word_index.ntotal)),
        vocabulary=VocabularyRecord(vocabulary, tuple(vocab_ids), tuple(missing)),
        counts=Counts(len(train_ids), len(report.unreadable), report.untagged),
        cnnr=previous.cnnr if previous is not None else None,  # CNN-R does not depend on the CCA
    )
    store.write_manifest(manifest)
    training = None  # the indexed training images, read once for standards and calibration from what is in memory
    if settings.scoring.score is Score.HELD_OUT or settings.scoring.method in CALIBRATED:
        ids = np.sort(train_ids)
        training = TrainingSet(cache.load(ids), label_matrix(store.db, ids.tolist(), vocab_ids), E, has_vector)
    if settings.scoring.score is not Score.EQ5:  # standards are saved for the store's own settings
        with _Timer(seconds, "standards"), progress.task("word standards", None):
            save_standards(store, tag, progress, training)
    if settings.scoring.method in CALIBRATED:
        with _Timer(seconds, "calibration"), progress.task("calibrating confidence on held-out training images", None):
            save_calibration(store, tag, progress, training)
    store.remove_unreferenced()
    report.n_indexed = len(train_ids)
    report.n_words = len(vocabulary)
    report.canonical_correlations = [float(c) for c in projection.canonical_correlations_]


def resolved(settings: BuildSettings) -> BuildSettings:
    """The settings with their files made absolute, as a store keeps them (so that it can move)."""
    encoder, text = settings.encoder, settings.text
    return settings.replace(
        encoder=encoder.replace(weights=encoder.weights.resolve() if encoder.weights else None),
        text=text.replace(vocabulary=text.vocabulary.resolve() if text.vocabulary else None,
                          words=str(Path(text.words).resolve()) if Path(text.words).is_file() else text.words))


def read_training_corpus(path: Path, vocabulary: tuple[str, ...] | None, text: TextSettings, progress: Progress,
                         ) -> tuple[Corpus, KeywordSummary | None, dict[str, int]]:
    """The training images: a corpus file's, or the photos with keywords of a folder or a list of photos (with what
    reading their keywords found); without the words on fewer images than ``text.min_photos`` (and those words)."""
    summary = None
    if path.is_dir() or path.suffix.lower() in LISTS:
        corpus, summary = photo_folder_corpus([path], vocabulary, hierarchy=text.keywords.value, progress=progress)
    else:
        corpus = read_corpus(path, vocabulary)
    corpus, rare = keep_frequent(corpus, text.min_photos)
    return corpus, summary, rare


def build_index(corpus_path: Path, store_root: Path, settings: BuildSettings | None = None,
                progress: Progress | None = None, *, wait: bool | float = False) -> IndexReport:
    """Import ``corpus_path`` as training images of the store at ``store_root`` and (re)build its model."""
    progress = progress or NoProgress()
    settings = resolved(settings or BuildSettings())
    report = IndexReport(store=Path(store_root))
    seconds = report.seconds
    with _Timer(seconds, "read"):
        vocabulary_filter = read_vocabulary(settings.text.vocabulary) if settings.text.vocabulary else None
        corpus, report.keywords, report.words_left_out = read_training_corpus(Path(corpus_path), vocabulary_filter,
                                                                              settings.text, progress)
        words = load_word_vectors(settings.text.words)
        encoder = build_encoder(settings.encoder.name, settings.encoder.weights)
        check_settings(settings, encoder, words, len(vocabulary_filter or corpus.vocabulary), len(corpus.entries))
    report.dropped_tags, report.words = corpus.dropped_tags, list(corpus.vocabulary)
    store = StoreDir.create(Path(store_root), wait=wait)
    try:
        upright = store_upright(store, settings)
        with _Timer(seconds, "import+extract"):
            extracted = extract_features(store, corpus, TRAIN, encoder, upright=upright, strict=settings.strict,
                                         batch_size=settings.batch_size, progress=progress,
                                         dtype=settings.feature_dtype.value, ray_address=settings.ray)
        report.extracted, report.cached = extracted.extracted, extracted.cached
        report.unreadable, report.duplicates = extracted.unreadable, extracted.imported.duplicates
        write_model(store, settings, encoder, words, store_vocabulary(store, vocabulary_filter), report, progress,
                    upright)
    finally:
        store.close()
    report.n_images = len(corpus.entries)
    log.info("indexed %d images, %d words in %s", report.n_indexed, report.n_words, store_root)
    return report


def rebuild(store_root: Path, settings: BuildSettings, progress: Progress | None = None, *,
            wait: bool | float = False) -> IndexReport:
    """Fit the store's model again from its own training images (their features cached) with ``settings``, which
    keep the store's encoder, word vectors and vocabulary (what ``annot tune`` changes is the rest)."""
    progress = progress or NoProgress()
    report = IndexReport(store=Path(store_root))
    with StoreDir.open(Path(store_root), write=True, wait=wait) as store:
        manifest = store.manifest()
        kept = manifest.settings
        if (settings.encoder, settings.text.words, settings.feature_dtype) != (kept.encoder, kept.text.words,
                                                                             kept.feature_dtype):
            raise AnnotError(f"{store_root}: a rebuild keeps the store's encoder, word vectors and feature precision; "
                             "index the corpus again to change them")
        words = load_word_vectors(manifest.words.source)
        encoder = build_encoder(manifest.encoder.name, Path(manifest.encoder.weights) if manifest.encoder.weights else None)
        vocabulary = tuple(manifest.vocabulary.words)
        check_settings(settings, encoder, words, len(vocabulary), manifest.counts.train_images)
        write_model(store, settings, encoder, words, vocabulary, report, progress,
                    manifest.encoder.orientation == "exif")
    report.n_images = report.n_indexed
    return report
