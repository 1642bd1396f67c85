"""``annot index``: the pipeline from a tagged corpus file to a complete store.

Stages (each timed): read the corpus, import it into the database, extract features (resumable), build the text
view, fit the projection, write the indexes, then replace the manifest. Models and indexes are written under new
names and the manifest, written last and atomically, switches to them: a crash at any point leaves the previous
store readable, and a rerun with the same arguments extracts only the features still missing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from sqlalchemy import select

from annot.errors import AnnotError, CorpusError, WordVectorError
from annot.features.encoders import ImageEncoder, build_encoder, resolve_encoder_name
from annot.features.text import NORMALIZATIONS, TEXT_VIEWS, normalize_features, text_view, usable_rows, word_view
from annot.features.words import WordVectors, load_word_vectors
from annot.indexer.corpus import Corpus, read_corpus, read_vocabulary
from annot.indexer.features import FeatureCache
from annot.indexer.importer import import_corpus, tag_ids
from annot.indexer.stream import project_to_file, streamed_statistics, training_chunks
from annot.progress import NoProgress, Progress
from annot.projection import PROJECTIONS, build_projection
from annot.projection.cca import CCAStatistics, LinearCCA
from annot.projection.registry import SPACES, parse_landmarks, space_rows
from annot.projection.text_kernel import TEXT_KERNELS
from annot.retrieval.ann import (
    ADD_CHUNK,
    AGREEMENT_TARGET,
    RECALL_QUERIES,
    IndexInfo,
    Tagger,
    build_ann,
    choose_factory,
    parse_bytes,
    pool_depth,
    train_sample_size,
    tune_search,
)
from annot.retrieval.indexes import build_flat_index, save_index
from annot.retrieval.scoring import SCORES, pooled_tagger, tag_k
from annot.schema import image_tags, images, tags
from annot.schema.queries import label_matrix
from annot.store import Store, atomic_write, save_arrays

log = logging.getLogger(__name__)

TRAIN = "train"


@dataclass(frozen=True)
class IndexConfig:
    """Every setting of ``annot index``; recorded in the manifest so queries rebuild exactly this projection. The
    defaults are the cross-validated choice on Corel-5k's training images (``benchmarks/corel5k.py``: five cover
    hold-outs the size of the test split, :mod:`annot.evaluation.splits`)."""

    encoder: str = "efficientnet-lite0-stages"
    weights: Path | None = None
    flip: bool = False
    crops: bool = False
    words: str = "glove-50"
    text: str = "w2v+bv"
    normalization: str = "none"
    projection: str = "linear-cca"
    landmarks: str = "auto"
    gamma_scale: float = 1.0
    text_kernel: str = "linear"
    text_gamma_scale: float = 1.0
    space: str = "image"
    n_components: int | None = None
    reg_x: float = 0.3
    reg_y: float = 0.3
    vocabulary: Path | None = None
    strict: bool = False
    batch_size: int = 32
    method: str = "cca-knn"
    k: int = 5
    temperature: float = 0.1
    frequency_power: float = 0.375
    depth: int = 0
    k_power: float = 0.0
    score: str = "eq5"
    index: str = "auto"
    memory_budget: str = "4GB"
    tag_agreement: float = AGREEMENT_TARGET
    feature_dtype: str = "float32"
    ray: str | None = None

    @classmethod
    def of_store(cls, store_root: Path, **changes: Any) -> IndexConfig:
        """The settings a store was indexed with (its manifest's ``config``), with ``changes`` applied: for
        rebuilding a copy of a store with one setting changed."""
        with Store.open(Path(store_root), read_only=True) as store:
            saved = dict(store.manifest()["config"])
        paths = {k: Path(saved[k]) for k in ("vocabulary", "weights") if saved.get(k)}  # stored as text
        return cls(**{**{k: v for k, v in saved.items() if k in cls.__dataclass_fields__}, **paths, **changes})


@dataclass
class IndexReport:
    store: Path
    n_images: int = 0
    n_indexed: int = 0
    n_words: int = 0
    extracted: int = 0
    cached: int = 0
    unreadable: dict[str, str] = field(default_factory=dict)
    untagged: int = 0
    missing_word_vectors: list[str] = field(default_factory=list)
    dropped_tags: dict[str, int] = field(default_factory=dict)
    canonical_correlations: list[float] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


class _Timer:
    def __init__(self, seconds: dict[str, float], stage: str) -> None:
        self.seconds, self.stage = seconds, stage

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.seconds[self.stage] = round(time.perf_counter() - self.start, 3)


def extract_features(
    store: Store,
    corpus: Corpus,
    split: str,
    encoder: ImageEncoder,
    *,
    strict: bool,
    batch_size: int,
    progress: Progress,
    dtype: str = "float32",
    ray_address: str | None = None,
) -> tuple[list[tuple[int, Path]], FeatureCache, dict[str, str], int, int]:
    """Import a corpus and make sure its features are cached; returns the decodable (id, path) items, the cache,
    the unreadable images with reasons, and how many features were extracted and found cached."""
    with progress.task(f"importing {corpus.source.name}", len(corpus.entries)) as advance:
        imported = import_corpus(store, corpus, split, strict=strict, progress=advance)
    cache = FeatureCache(store.features_dir / encoder.key, encoder.dim, dtype)
    with progress.task(f"extracting features ({encoder.name})", len(imported.items)) as advance:
        if ray_address:
            from annot.indexer.distributed import connect, extract_with_ray

            extracted, cached, _ = extract_with_ray(connect(ray_address), cache, imported.items, encoder, batch_size, advance)
        else:
            report = cache.extract(imported.items, encoder, batch_size=batch_size, progress=advance)
            extracted, cached = report.extracted, report.cached
    failures = cache.failures()
    unreadable = dict(imported.unreadable)
    for image_id, path in imported.items:
        if image_id in failures:
            unreadable[str(path)] = failures[image_id].split(": ", 1)[-1]
    if strict and len(unreadable) > len(imported.unreadable):
        first = next(p for p in unreadable if p not in imported.unreadable)
        raise CorpusError(f"{first}: {unreadable[first]}")
    items = [(i, p) for i, p in imported.items if i not in failures]
    return items, cache, unreadable, extracted, cached


def _training_ids(store: Store) -> list[int]:
    with store.db.connect() as conn:
        return [int(i) for (i,) in conn.execute(select(images.c.id).where(images.c.split == TRAIN).order_by(images.c.id))]


def _store_vocabulary(store: Store, given: tuple[str, ...] | None) -> tuple[str, ...]:
    """The ``--vocabulary`` words when given, else every word on the store's training images."""
    if given is not None:
        return given
    with store.db.connect() as conn:
        query = (
            select(tags.c.word)
            .distinct()
            .select_from(tags.join(image_tags, tags.c.id == image_tags.c.tag_id).join(images, images.c.id == image_tags.c.image_id))
            .where(images.c.split == TRAIN)
        )
        return tuple(sorted(w for (w,) in conn.execute(query)))


@dataclass(frozen=True)
class TrainingSet:
    """The store's training images as arrays: ids, raw features X, tags (n × V), word vectors E (V × q)."""

    image_ids: NDArray[np.int64]
    X: NDArray[np.float32]
    labels: NDArray[np.bool_]
    vocabulary: tuple[str, ...]
    tag_ids: list[int]
    E: NDArray[np.float32]
    has_vector: NDArray[np.bool_]
    missing_word_vectors: list[str]
    n_untagged: int


def load_training_set(
    store: Store, cache: FeatureCache, vocabulary: tuple[str, ...], words: WordVectors, text: str
) -> TrainingSet:
    """Decodable training images that carry at least one tag the text view can represent, with their arrays."""
    word_ids = tag_ids(store, vocabulary, create=True)
    vocab_ids = [word_ids[w] for w in vocabulary]
    E, missing = words.matrix(vocabulary)
    missing_set = set(missing)
    has_vector = np.array([w not in missing_set for w in vocabulary])
    failed = set(cache.failures())
    ids = np.array([i for i in _training_ids(store) if i not in failed], np.int64)
    labels = label_matrix(store.db, ids.tolist(), vocab_ids)
    keep = usable_rows(labels, has_vector, text)
    ids, labels = ids[keep], labels[keep]
    X = cache.load(ids) if len(ids) else np.zeros((0, cache.dim), np.float32)
    return TrainingSet(ids, X, labels, vocabulary, vocab_ids, E, has_vector, missing, int((~keep).sum()))


def _fit_projection(
    store: Store, cache: FeatureCache, corpus: Corpus, config: IndexConfig, vocab_ids: list[int],
    E: NDArray[np.float32], has_vector: NDArray[np.bool_], seconds: dict[str, float], progress: Progress,
) -> tuple[Any, NDArray[np.float32], NDArray[np.int64], int, CCAStatistics | None]:
    """Fit the projection and give the training images' correlation rows in the shared space, their ids and how
    many training images were left out for having no usable tag. Linear CCA streams: two passes over the cache,
    statistics then projections (into a memory-mapped file); kernel CCA needs its kernel, so it works in memory."""
    failed = set(cache.failures())
    candidates = np.array([i for i in _training_ids(store) if i not in failed], np.int64)
    if config.projection != "linear-cca":
        with _Timer(seconds, "fit"):
            labels = label_matrix(store.db, candidates.tolist(), vocab_ids)
            keep = usable_rows(labels, has_vector, config.text)
            if keep.sum() < 2:
                raise CorpusError(f"{corpus.source}: fewer than 2 usable tagged images; nothing to fit")
            X = normalize_features(cache.load(candidates[keep]), config.normalization)
            cca = build_projection(config.projection, config.n_components, config.reg_x, config.reg_y, config.landmarks,
                                   config.gamma_scale, config.text_kernel, config.text_gamma_scale)
            Y = text_view(labels[keep], E, has_vector, config.text)
            U = cca.fit_transform(X, Y)
        return cca, space_rows(U, lambda: cca.transform_y(Y), config.space), candidates[keep], int((~keep).sum()), None

    def chunks() -> Iterator[tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.bool_]]]:
        return training_chunks(store, cache, candidates, vocab_ids)

    with _Timer(seconds, "fit"), progress.task("statistics pass", None):
        if config.ray:
            from annot.indexer.distributed import connect, statistics_with_ray

            stats, used, untagged = statistics_with_ray(connect(config.ray), chunks, E, has_vector, config.text,
                                                        config.normalization)
        else:
            stats, used, untagged = streamed_statistics(chunks, E, has_vector, config.text, config.normalization)
        if stats is None or used < 2:
            raise CorpusError(f"{corpus.source}: fewer than 2 usable tagged images; nothing to fit")
        cca = LinearCCA(config.n_components, config.reg_x, config.reg_y).fit_statistics(stats)
    with _Timer(seconds, "project"), progress.task("projecting", len(candidates)) as advance:
        path = store.indexes_dir / f".projected-{os.getpid()}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(".projected-*.npy"):  # scratch of a run that was killed
            stale.unlink(missing_ok=True)
        rows, ids = project_to_file(chunks, cca, E, has_vector, config.text, config.normalization, config.space, used,
                                    len(cca.canonical_correlations_), path, advance)
    return cca, rows, ids, untagged, stats


def annotation_tagger(store: Store, ids: NDArray[np.int64], vocab_ids: list[int], annotation: dict[str, Any]) -> Tagger:
    """CCA-KNN's tags from candidate pools of indexed ids with the store's annotation settings (K, β, τ, α): what an
    approximate index's search setting must agree on (``tune_search``)."""
    labels = label_matrix(store.db, ids.tolist(), vocab_ids)
    frequency = labels.sum(axis=0).astype(np.int64)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    k = tag_k(int(annotation.get("k", IndexConfig.k)), float(annotation.get("k_power") or 0.0), frequency)
    score = pooled_tagger(sparse.csr_matrix(labels), frequency, k, float(annotation.get("temperature", IndexConfig.temperature)),
                          float(annotation.get("frequency_power") or 0.0))

    def tags(D: NDArray[np.float32], found: NDArray[np.int64]) -> NDArray[np.int64]:
        where = np.clip(np.searchsorted(sorted_ids, found), 0, len(ids) - 1)
        return score(D, np.where(found >= 0, order[where], -1))

    return tags


def build_image_index(factory: str, rows: NDArray[np.float32], ids: NDArray[np.int64], progress: Progress,
                      k: int = 16, depth: int = 0, tagger: Tagger | None = None,
                      agreement: float = AGREEMENT_TARGET) -> tuple[Any, IndexInfo]:
    """The image index over correlation rows: trained on a sample when it needs training, filled in chunks, and its
    search setting tuned on held-out queries over the annotation pool (``pool_depth`` of K and ``depth``): to agree
    with the exact pool's tags (``tagger``), or without one to the recall target (approximate indexes only)."""
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
    picked = np.sort(rng.choice(n, size=min(n, RECALL_QUERIES), replace=False))
    pool = pool_depth(n, k, depth, exact=factory == "Flat")
    with progress.task(f"tuning the search of {factory} over {pool:,}-image pools", None):
        info = tune_search(index, factory, chunks, np.asarray(rows[picked]), ids[picked], pool, tagger, agreement)
    return index, info


def build_word_index(cca: Any, E: NDArray[np.float32], has_vector: NDArray[np.bool_], text: str,
                     vocab_ids: list[int]) -> Any:
    """The vocabulary in the shared space, Z = E W_y, as an exact index whose ids are tag ids (the words the text
    view can represent: for W2V those with a vector)."""
    word_rows = np.flatnonzero(has_vector) if text == "w2v" else np.arange(len(vocab_ids))
    Z = cca.transform_y(word_view(E, text)[word_rows])
    return build_flat_index(Z, np.array(vocab_ids, np.int64)[word_rows])


HELD_OUT_LINEAR_LIMIT = 50_000  # training images: each hold-out's dense distances to its fitting images stay in memory


def check_held_out_size(projection: str, n: int) -> None:
    """Refuse held-out standards (``--score standardized-held-out``) where refitting the projection per hold-out, as
    ``annot tune`` fits candidates (exact KCCA, dense distances), would not fit: above KCCA's exact-fit limit, or
    ``HELD_OUT_LINEAR_LIMIT`` images for linear CCA."""
    from annot.projection.kcca import EXACT_LIMIT

    limit = EXACT_LIMIT if projection == "kcca" else HELD_OUT_LINEAR_LIMIT
    if n > limit:
        raise AnnotError(f"--score standardized-held-out refits the {projection} projection on five hold-outs: at most "
                         f"{limit:,} training images, not {n:,}; use --score standardized")


def save_standards(store: Store, tag: str, progress: Progress | None = None) -> str:
    """Compute each word's standards for the store's own annotation settings (``AnnotationModel.standards``; held-out
    ones with ``annot.evaluation.tune.held_out_word_standards``), save them and switch the manifest to them; returns
    the file's store path."""
    from annot.evaluation.tune import held_out_word_standards
    from annot.retrieval.model import AnnotationModel

    model = AnnotationModel(store)
    settings = model.settings()
    if settings["score"] == "standardized-held-out":
        mean, spread = held_out_word_standards(store, model.ids, progress)
    else:
        mean, spread = model.standards(settings)
    path = f"models/standards-{tag}.npz"
    save_arrays(store.path(path), {"mean": mean, "spread": spread})
    manifest = store.manifest()
    manifest["standards"] = {"file": path, "key": model.standards_key(settings)}
    store.write_manifest(manifest)
    return path


def _short_hash(*arrays: NDArray[Any]) -> str:
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()[:12]


def build_index(corpus_path: Path, store_root: Path, config: IndexConfig = IndexConfig(), progress: Progress | None = None) -> IndexReport:
    """Import ``corpus_path`` as training images of the store at ``store_root`` and (re)build its model."""
    progress = progress or NoProgress()
    if config.text not in TEXT_VIEWS:
        raise AnnotError(f"--text must be one of {', '.join(TEXT_VIEWS)}, got {config.text!r}")
    if config.projection not in PROJECTIONS:
        raise AnnotError(f"--projection must be one of {', '.join(PROJECTIONS)}, got {config.projection!r}")
    if config.space not in SPACES:
        raise AnnotError(f"--space must be one of {', '.join(SPACES)}, got {config.space!r}")
    if config.text_kernel not in TEXT_KERNELS:
        raise AnnotError(f"--text-kernel must be one of {', '.join(TEXT_KERNELS)}, got {config.text_kernel!r}")
    if config.text_kernel != "linear" and config.projection != "kcca":
        raise AnnotError(f"--text-kernel {config.text_kernel} needs --projection kcca (linear CCA's views are linear)")
    if not config.text_gamma_scale > 0:
        raise AnnotError(f"--text-gamma-scale must be > 0, got {config.text_gamma_scale}")
    if config.normalization not in NORMALIZATIONS:
        raise AnnotError(f"--normalize must be one of {', '.join(NORMALIZATIONS)}, got {config.normalization!r}")
    if config.score not in SCORES:
        raise AnnotError(f"--score must be one of {', '.join(SCORES)}, got {config.score!r}")
    if config.feature_dtype not in ("float32", "float16"):
        raise AnnotError(f"--feature-dtype must be float32 or float16, got {config.feature_dtype!r}")
    parse_bytes(config.memory_budget)  # a bad budget fails before any work
    if not 0 <= config.tag_agreement <= 1:
        raise AnnotError(f"--tag-agreement must be between 0 and 1, got {config.tag_agreement}")
    report = IndexReport(store=Path(store_root))
    seconds = report.seconds
    with _Timer(seconds, "read"):
        vocabulary_filter = read_vocabulary(config.vocabulary) if config.vocabulary else None
        corpus = read_corpus(Path(corpus_path), vocabulary_filter)
        words = load_word_vectors(config.words)
        encoder = build_encoder(config.encoder, config.weights, flip=config.flip, crops=config.crops)
    report.dropped_tags = corpus.dropped_tags
    if config.score == "standardized-held-out":  # before anything is written
        check_held_out_size(config.projection, len(corpus.entries))
        if config.projection == "kcca" and (parse_landmarks(config.landmarks) not in (None, "auto")
                                            or config.text_gamma_scale != 1):
            raise AnnotError("--score standardized-held-out fits its hold-outs as annot tune does (exact KCCA, the text "
                             "kernel's default width): not with --landmarks N or --text-gamma-scale")

    store = Store.create(Path(store_root))
    try:
        with _Timer(seconds, "import+extract"):
            _, cache, unreadable, report.extracted, report.cached = extract_features(
                store, corpus, TRAIN, encoder, strict=config.strict, batch_size=config.batch_size, progress=progress,
                dtype=config.feature_dtype, ray_address=config.ray,
            )
        report.unreadable = unreadable
        with _Timer(seconds, "text view"):
            vocabulary = _store_vocabulary(store, vocabulary_filter)
            vocab_ids = [tag_ids(store, vocabulary, create=True)[w] for w in vocabulary]
            E, missing = words.matrix(vocabulary)
            has_vector = np.array([w not in set(missing) for w in vocabulary])
            if config.strict and missing:
                raise WordVectorError(f"{words.source}: no vector for {len(missing)} tags: {', '.join(missing[:10])}")
        report.missing_word_vectors = missing
        cca, U_rows, train_ids, report.untagged, stats = _fit_projection(store, cache, corpus, config, vocab_ids, E,
                                                                         has_vector, seconds, progress)
        try:
            with _Timer(seconds, "indexes"):
                budget = parse_bytes(config.memory_budget)
                factory = choose_factory(len(train_ids), U_rows.shape[1], budget) if config.index == "auto" else config.index
                tagger = None if factory == "Flat" else annotation_tagger(store, train_ids, vocab_ids, asdict(config))
                image_index, info = build_image_index(factory, U_rows, train_ids, progress, config.k, config.depth, tagger,
                                                      config.tag_agreement)
                word_index = build_word_index(cca, E, has_vector, config.text, vocab_ids)
                tag = _short_hash(train_ids, *cca.to_arrays().values())
                files = {
                    "projection": f"models/projection-{tag}.npz",
                    "images": f"indexes/images-{tag}.faiss",
                    "image_ids": f"indexes/images-{tag}.ids.npy",
                    "words": f"indexes/words-{tag}.faiss",
                }
                save_arrays(store.path(files["projection"]), cca.to_arrays())
                if stats is not None:  # kept so that `annot add/remove/refit` can update and refit without a full pass
                    files["statistics"] = f"models/statistics-{tag}.npz"
                    save_arrays(store.path(files["statistics"]), stats.to_arrays())
                save_index(image_index, store.path(files["images"]))
                atomic_write(store.path(files["image_ids"]), lambda fh: np.save(fh, train_ids))
                save_index(word_index, store.path(files["words"]))
        finally:
            if isinstance(U_rows, np.memmap) and U_rows.filename:
                path = Path(U_rows.filename)
                del U_rows
                path.unlink(missing_ok=True)
        manifest = {
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "encoder": {"name": resolve_encoder_name(config.encoder), "key": encoder.key, "dim": encoder.dim, "flip": config.flip, "crops": config.crops,
                        "own_sizes": True, "weights": str(Path(config.weights).resolve()) if config.weights else None},
            "words": {"source": words.source, "dim": words.dim},
            "text": config.text,
            "projection": {"kind": config.projection, "file": files["projection"], "statistics": files.get("statistics"), "n_components": len(cca.canonical_correlations_),
                           "landmarks": config.landmarks if config.projection == "kcca" else None,
                           "gamma_scale": config.gamma_scale if config.projection == "kcca" else None,
                           "text_kernel": config.text_kernel,
                           "text_gamma_scale": config.text_gamma_scale if config.text_kernel != "linear" else None,
                           "normalization": config.normalization, "space": config.space,
                           "reg_x": config.reg_x, "reg_y": config.reg_y,
                           "canonical_correlations": [round(float(c), 6) for c in cca.canonical_correlations_]},
            "index": {"file": files["images"], "ids_file": files["image_ids"], "kind": info.factory, "metric": "correlation",
                      "ntotal": len(train_ids), **info.manifest()},
            "word_index": {"file": files["words"], "ntotal": int(word_index.ntotal)},
            "vocabulary": {"words": list(vocabulary), "tag_ids": vocab_ids, "missing_word_vectors": missing},
            "annotation": {"method": config.method, "n_tags": 5, "k": config.k, "temperature": config.temperature,
                           "frequency_power": config.frequency_power, "depth": config.depth,
                           "k_power": config.k_power, "score": config.score},
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
            "counts": {"train_images": len(train_ids), "unreadable": len(unreadable), "untagged": report.untagged},
            "feature_dtype": config.feature_dtype,
        }
        if store.has_manifest() and "cnnr" in (previous := store.manifest()):
            manifest["cnnr"] = previous["cnnr"]  # CNN-R lives in models/cnnr/ and does not depend on the CCA
        store.write_manifest(manifest)
        # standards are saved for the store's own settings, so queries need not compute them
        if config.score == "standardized-held-out":  # the projection fitted again per hold-out: its own progress
            with _Timer(seconds, "standards"):
                files["standards"] = save_standards(store, tag, progress)
        elif config.score == "standardized":
            with _Timer(seconds, "standards"), progress.task("word standards (leave-one-out scores)", None):
                files["standards"] = save_standards(store, tag)
        store.remove_unreferenced(set(files.values()))
    finally:
        store.close()
    report.n_images = len(corpus.entries)
    report.n_indexed = len(train_ids)
    report.n_words = len(vocabulary)
    report.canonical_correlations = [float(c) for c in cca.canonical_correlations_]
    log.info("indexed %d images, %d words in %s", report.n_indexed, report.n_words, store_root)
    return report
