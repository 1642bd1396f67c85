"""Growing and shrinking a store without re-indexing: ``annot add``, ``annot remove``, ``annot refit``.

``add`` imports, extracts and projects tagged images with the fitted projection (no refit) and adds them to the image
index. An image the index already holds but whose tags the corpus changes is updated everywhere its tags count: its
old tags leave the CCA statistics and its new ones enter, its row in a text-space index is replaced, its votes change,
and an image left with no usable tag leaves the index. ``remove`` takes images out of the index (their rows stay in
the database with split ``removed``). Both keep the CCA sufficient statistics exact; ``refit`` re-estimates the
projection from them and rebuilds the indexes in one streaming pass.

The index records its images' tags as they were indexed (what the statistics hold), so that a change is computed
against them and not against the database, which a killed run may have updated already. Each command writes new
files under new names and switches the manifest last, so a crash leaves the previous store readable, and rerunning
finishes the job. Fitted baselines are dropped (they were fitted on the old training set).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select

from annot.errors import AnnotError, CorpusError, StoreError
from annot.features.cache import FeatureCache
from annot.features.encoders import build_encoder
from annot.features.text import normalize_features, usable_rows
from annot.features.words import load_word_vectors
from annot.fitting.fit import Chunk, chunk_rows, chunk_statistics, project_to_file, word_matrix
from annot.indexer.build import build_image_index, build_word_index, check_held_out_size, short_hash
from annot.indexer.corpus import read_corpus
from annot.indexer.extract import extract_features
from annot.indexer.importer import TRAIN
from annot.indexer.keywords import KeywordSummary, photo_folder_corpus
from annot.indexer.pending import Pending
from annot.indexer.standards import save_standards
from annot.inputs import LISTS
from annot.model.loaded import labels_from_arrays, labels_to_arrays
from annot.progress import NoProgress, Progress
from annot.projection import LinearCCA, correlation_rows, linear_cca, load_projection
from annot.projection.cca import CCAStatistics
from annot.retrieval.ann import set_search
from annot.schema import corrections, images, tags
from annot.schema.queries import label_matrix
from annot.schema.writes import update_rows
from annot.settings import ProjectionKind, Score, Space
from annot.store import StoreDir
from annot.store.manifest import VocabularyRecord

log = logging.getLogger(__name__)

REMOVED = "removed"


@dataclass
class GrowReport:
    added: int = 0
    retagged: int = 0
    removed: int = 0
    skipped: int = 0  # already in (add) or already out (remove), or without usable tags
    ntotal: int = 0
    refitted: bool = False
    unreadable: dict[str, str] = field(default_factory=dict)
    duplicates: dict[str, str] = field(default_factory=dict)
    grown: list[str] = field(default_factory=list)  # words new to the vocabulary (added by corrections)
    keywords: KeywordSummary | None = None  # what reading a folder's keywords found
    outside: dict[str, int] = field(default_factory=dict)  # tags outside the store's words: how many images had each

    def to_dict(self) -> dict[str, Any]:
        return {"added": self.added, "retagged": self.retagged, "removed": self.removed, "skipped": self.skipped,
                "indexed": self.ntotal, "refitted": self.refitted, "unreadable": self.unreadable,
                "content_duplicates": self.duplicates, "new_words": self.grown,
                "keywords": None if self.keywords is None else self.keywords.to_dict(),
                "tags_outside_vocabulary": self.outside}


class _Open:
    """A linear-CCA store's state for growing: its projection, statistics, image index, ids and indexed tags."""

    def __init__(self, store: StoreDir) -> None:
        self.store = store
        m = self.manifest = store.manifest()
        if m.settings.projection.kind is not ProjectionKind.LINEAR or m.projection.statistics is None:
            raise StoreError(f"{store.root}: add, remove and refit need a linear-cca store (a {m.settings.projection.kind} "
                             "store's kernel is fitted on its images: index the corpus again instead)")
        self.vocabulary = tuple(m.vocabulary.words)
        self.tag_ids = list(m.vocabulary.tag_ids)
        self.fitted = m.vocabulary.n_fitted  # the first words, which the projection's text side was fitted with
        s = m.settings
        self.view, self.normalization, self.space = s.text.view.value, s.projection.normalization.value, s.projection.space
        self.words = load_word_vectors(m.words.source)
        self.E, self.has_vector, _ = word_matrix(self.words, self.vocabulary[: self.fitted])
        self.grew = False
        self.projection = load_projection(ProjectionKind.LINEAR, store.read_arrays(m.projection.file, "projection"),
                                          store.path(m.projection.file.path))
        assert isinstance(self.projection, LinearCCA)
        self._stats: CCAStatistics | None = None  # read when asked for (a correction never asks)
        self.pending = Pending.read(store, m.projection.pending)
        self.index = store.read_index(m.index.file, "image index")
        set_search(self.index, dict(m.index.search))
        self.ids = np.asarray(store.read_array(m.index.ids, "image ids"), np.int64)
        if len(self.ids) != self.index.ntotal:
            raise StoreError(f"{store.path(m.index.ids.path)}: damaged image ids ({len(self.ids):,} ids for an index "
                             f"of {self.index.ntotal:,} images)")
        if m.index.labels is not None:
            self.labels = labels_from_arrays(store.read_arrays(m.index.labels, "indexed tags"),
                                             store.path(m.index.labels.path))
        else:  # a version-1 store: the database's tags are what it indexed
            self.labels = label_matrix(store.db, self.ids.tolist(), self.tag_ids)
        e = m.encoder
        self.cache = FeatureCache(store.features_dir / e.key, e.dim, s.feature_dtype.value, e.orientation == "exif")

    @property
    def loaded_stats(self) -> CCAStatistics | None:
        """The statistics if they were read (or set), else None."""
        return self._stats

    @property
    def stats(self) -> CCAStatistics:
        """The statistics as they stand: the written ones with the pending changes added in (read once)."""
        if self._stats is None:
            m = self.manifest
            assert m.projection.statistics is not None
            stats = CCAStatistics.from_arrays(self.store.read_arrays(m.projection.statistics, "statistics"))
            for rows, sign in ((self.pending.before, -1), (self.pending.after, 1)):
                part, _ = self.statistics_of(np.asarray(sorted(rows), np.int64), _rows_of(rows))
                if part is not None:
                    stats = stats - part if sign < 0 else stats + part
            self._stats = stats
            self.pending = Pending()
        return self._stats

    @stats.setter
    def stats(self, value: CCAStatistics) -> None:
        """Statistics that stand as a whole (made from the getter's, or anew): the pending changes are in them."""
        self._stats = value
        self.pending = Pending()

    def chunks(self, ids: NDArray[np.int64], labels: Callable[[NDArray[np.int64]], NDArray[np.bool_]] | None = None
               ) -> Callable[[], Iterator[Chunk]]:
        """(ids, features, tags) of ``ids`` in cache order; tags from ``labels(ids)``, else the database."""
        def read(chunk_ids: NDArray[np.int64]) -> NDArray[np.bool_]:
            return labels(chunk_ids) if labels is not None else label_matrix(self.store.db, chunk_ids.tolist(),
                                                                             self.tag_ids)

        def run() -> Iterator[Chunk]:
            wanted = np.asarray(ids, np.int64)
            for part_ids, x in self.cache.iter_parts():
                rows = np.flatnonzero(np.isin(part_ids, wanted))
                for lo in range(0, len(rows), 16_384):
                    sel = rows[lo : lo + 16_384]
                    yield part_ids[sel], np.asarray(x[sel], np.float32), read(part_ids[sel])

        return run

    def indexed_labels(self, ids: NDArray[np.int64]) -> NDArray[np.bool_]:
        """The tags the index holds for indexed ``ids``."""
        order = np.argsort(self.ids, kind="stable")
        return self.labels[order[np.searchsorted(self.ids[order], ids)]]

    def statistics_of(self, ids: NDArray[np.int64], labels: Callable[[NDArray[np.int64]], NDArray[np.bool_]] | None = None
                      ) -> tuple[CCAStatistics | None, NDArray[np.int64]]:
        """Statistics of the usable images among ``ids`` (tags from ``labels``, else the database), and their ids."""
        stats, used = None, []
        for chunk_ids, X, chunk_labels in self.chunks(ids, labels)():
            part, keep = chunk_statistics(X, chunk_labels[:, : self.fitted], self.E, self.has_vector, self.view,
                                          self.normalization)
            if part is not None:
                stats = part if stats is None else stats + part
                used.append(chunk_ids[keep])
        return stats, (np.concatenate(used) if used else np.zeros(0, np.int64))

    def members(self, labels: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """Which images with these tags belong in the index: in the image space any tag votes (a word added by a
        correction too); in the text spaces a row needs a tag the projection's text side was fitted with."""
        if self.space is Space.IMAGE:
            return np.asarray(labels.any(axis=1), np.bool_)
        return usable_rows(labels[:, : self.fitted], self.has_vector, self.view)

    def add_rows(self, ids: NDArray[np.int64], advance: Callable[[int], None]) -> None:
        """The images ``ids`` (members: see :meth:`members`) into the index, with their database tags."""
        for chunk_ids, X, labels in self.chunks(ids)():
            if self.space is Space.IMAGE:
                rows = correlation_rows(self.projection.transform(normalize_features(X, self.normalization)))
                self.index.add_with_ids(rows, chunk_ids)
            else:
                rows, keep = chunk_rows(self.projection, X, labels[:, : self.fitted], self.E, self.has_vector,
                                        self.view, self.normalization, self.space.value)
                self.index.add_with_ids(rows, chunk_ids[keep])
            advance(len(chunk_ids))

    def grow(self) -> list[str]:
        """Take into the vocabulary the words that corrections added to training images (tags of indexed or
        corrected images that the vocabulary lacks): each a new label column, set from the database for every
        indexed image. They vote at once; the projection learns them at the next refit."""
        with self.store.db.connect() as conn:
            found = conn.execute(select(tags.c.id, tags.c.word).join(corrections, corrections.c.tag_id == tags.c.id)
                                 .where(corrections.c.action == "add").distinct().order_by(tags.c.id)).all()
        known = set(self.tag_ids)
        new = [(int(i), str(w)) for i, w in found if int(i) not in known]
        if not new:
            return []
        columns = label_matrix(self.store.db, self.ids.tolist(), [i for i, _ in new])
        self.labels = np.hstack([self.labels, columns])
        self.tag_ids += [i for i, _ in new]
        self.vocabulary += tuple(w for _, w in new)
        self.grew = True
        return [w for _, w in new]

    def vocabulary_record(self) -> VocabularyRecord:
        m = self.manifest.vocabulary
        missing = set(m.missing_word_vectors) | {w for w in self.vocabulary[self.fitted :] if self.words.vector(w) is None}
        return VocabularyRecord(self.vocabulary, tuple(self.tag_ids), tuple(w for w in self.vocabulary if w in missing),
                                None if self.fitted == len(self.vocabulary) else self.fitted)

    def remove_rows(self, ids: NDArray[np.int64]) -> None:
        import faiss

        if not len(ids):
            return
        try:
            removed = self.index.remove_ids(faiss.IDSelectorBatch(ids))
        except RuntimeError as exc:
            raise StoreError(f"{self.store.root}: a {self.manifest.index.factory} index cannot remove images; index "
                             "again without them (annot index) or use a Flat or IVF index") from exc
        if removed != len(ids):
            raise StoreError(f"{self.store.root}: the index held {removed} of {len(ids)} images to remove")

    def commit(self, ids: NDArray[np.int64], labels: NDArray[np.bool_], projection: LinearCCA | None = None,
               word_index: Any = None, search: dict[str, int] | None = None, tuning: dict[str, Any] | None = None,
               ) -> None:
        """Write the index, its ids and tags, the statistics (and a refitted projection) under new names; switch the
        manifest; recompute the saved word standards (they depend on the indexed images)."""
        store, m = self.store, self.manifest
        tag = short_hash(ids, labels, self._stats.xy if self._stats is not None else
                         np.frombuffer(self.pending.digest().encode(), np.uint8))
        index_record = m.index
        if search is not None:
            index_record = _replace(index_record, search=search, tuning=tuning or {})
        index_record = _replace(index_record, file=store.save_index(f"indexes/images-{tag}.faiss", self.index),
                                ids=store.save_array(f"indexes/images-{tag}.ids.npy", ids),
                                labels=store.save_arrays(f"indexes/images-{tag}.tags.npz", labels_to_arrays(labels)),
                                ntotal=int(self.index.ntotal))
        if self._stats is not None:
            projection_record = _replace(m.projection, pending=None, statistics=store.save_arrays(
                f"models/statistics-{tag}.npz", self._stats.to_arrays()))
        else:  # a correction: the statistics as written, the changes beside them
            projection_record = _replace(m.projection, pending=self.pending.save(store, f"models/pending-{tag}.npz"))
        word_record = m.word_index
        if projection is not None:
            correlations = tuple(round(float(c), 6) for c in projection.canonical_correlations_)
            projection_record = _replace(projection_record,
                                         file=store.save_arrays(f"models/projection-{tag}.npz", projection.to_arrays()),
                                         canonical_correlations=correlations, n_components=len(correlations))
            word_record = _replace(word_record, file=store.save_index(f"indexes/words-{tag}.faiss", word_index))
        manifest = m.touched(index=index_record, projection=projection_record, word_index=word_record,
                             vocabulary=self.vocabulary_record(),
                             counts=_replace(m.counts, train_images=int(self.index.ntotal)), methods={},
                             standards=None)
        store.write_manifest(manifest)
        if m.settings.scoring.score is not Score.EQ5:
            save_standards(store, tag)
        store.remove_unreferenced()


def _rows_of(rows: dict[int, NDArray[np.bool_]]) -> Callable[[NDArray[np.int64]], NDArray[np.bool_]]:
    """Label rows by image id, as :meth:`_Open.statistics_of` asks for them."""
    def read(ids: NDArray[np.int64]) -> NDArray[np.bool_]:
        return np.asarray([rows[int(i)] for i in ids], bool)

    return read


def _replace(record: Any, **changes: Any) -> Any:
    from dataclasses import replace

    return replace(record, **changes)


def add_images(corpus_path: Path, store_root: Path, *, strict: bool = False, progress: Progress | None = None,
               wait: bool | float = False) -> GrowReport:
    """Add a corpus's tagged images to the store's index with the fitted projection (no refit); images already
    indexed take the corpus's tags everywhere they count. It takes turns with other writers (the server's
    corrections): the store is held while the images' rows are written and while the index takes them, not while
    their features are extracted."""
    progress = progress or NoProgress()
    store = StoreDir.open(Path(store_root), write=True, wait=wait, hold=False)
    try:
        state = _Open(store)
        path = Path(corpus_path)
        if path.is_dir() or path.suffix.lower() in LISTS:  # photos with keywords, read as annot index reads them
            corpus, keywords = photo_folder_corpus([path], state.vocabulary,
                                                   hierarchy=state.manifest.settings.text.keywords.value,
                                                   progress=progress)
        else:
            corpus, keywords = read_corpus(path, state.vocabulary), None
        settings = state.manifest.settings
        if settings.scoring.score is Score.HELD_OUT:  # before anything is written
            check_held_out_size(ProjectionKind.LINEAR, len(state.ids) + len(corpus.entries))
        e = state.manifest.encoder
        encoder = build_encoder(e.name, Path(e.weights) if e.weights else None)
        extracted = extract_features(store, corpus, TRAIN, encoder, upright=e.orientation == "exif", strict=strict,
                                     batch_size=settings.batch_size, progress=progress,
                                     dtype=settings.feature_dtype.value)
        report = GrowReport(unreadable=extracted.unreadable, duplicates=extracted.imported.duplicates,
                            keywords=keywords, outside=dict(corpus.dropped_tags))
        if not extracted.items:
            first = next(iter(extracted.unreadable.items()), None)
            raise CorpusError(f"{corpus.source}: none of its {len(corpus.entries)} images could be read"
                              + (f" (e.g. {first[0]}: {first[1]})" if first else ""))
        given = np.array(sorted(i for i, _ in extracted.items), np.int64)
        with store.change():
            apply_tags(_Open(store), given, report, progress)  # the store as it is now: others may have written
        return report
    finally:
        store.close()


def apply_tags(state: _Open, given: NDArray[np.int64], report: GrowReport, progress: Progress,
               defer: bool = False) -> None:
    """Make the index, its tags and the statistics hold the database's tags of the training images ``given``: new
    ones are added, changed ones updated everywhere their tags count (``add``; corrections of the photo library).
    ``defer``: the statistics' change is written as pending (:class:`Pending`), not into them (a correction)."""
    store = state.store
    indexed = np.isin(given, state.ids)
    candidates, already = given[~indexed], given[indexed]
    now_labels = label_matrix(store.db, already.tolist(), state.tag_ids)
    moved = (now_labels != state.indexed_labels(already)).any(axis=1)
    changed, changed_labels = already[moved], now_labels[moved]
    entering = candidates[state.members(label_matrix(store.db, candidates.tolist(), state.tag_ids))]
    entering = entering[np.isin(entering, state.cache.cached_ids())]  # an image without features cannot enter
    staying = changed[state.members(changed_labels)]
    report.skipped = len(already) - len(changed) + len(candidates) - len(entering)
    if not (len(changed) or len(entering) or state.grew):
        report.ntotal = int(state.index.ntotal)
        return
    entering_labels = label_matrix(store.db, entering.tolist(), state.tag_ids)
    if defer and state.loaded_stats is None:
        fitted = state.fitted
        state.pending.change(changed, state.indexed_labels(changed)[:, :fitted], changed_labels[:, :fitted])
        state.pending.change(entering, None, entering_labels[:, :fitted])
    else:
        old, _ = state.statistics_of(changed, state.indexed_labels)
        new, _ = state.statistics_of(changed)
        added, _ = state.statistics_of(entering)
        stats = state.stats
        for part, sign in ((old, -1), (new, 1), (added, 1)):
            if part is not None:
                stats = stats - part if sign < 0 else stats + part
        state.stats = stats
    # the changed images' rows: replaced where they depend on the tags, dropped where no tag is left
    out = changed if state.space is not Space.IMAGE else np.setdiff1d(changed, staying)
    back = staying if state.space is not Space.IMAGE else np.zeros(0, np.int64)
    state.remove_rows(out)
    keep = ~np.isin(state.ids, out)
    with progress.task("adding to the index", len(back) + len(entering)) as advance:
        state.add_rows(np.concatenate([back, entering]), advance)
    kept_ids, kept_labels = state.ids[keep], state.labels[keep].copy()
    hit = np.isin(kept_ids, changed)  # the index now holds these images' new tags; the others keep theirs
    if hit.any():
        kept_labels[hit] = label_matrix(store.db, kept_ids[hit].tolist(), state.tag_ids)
    arriving = np.concatenate([back, entering])
    state.commit(np.concatenate([kept_ids, arriving]),
                 np.vstack([kept_labels, label_matrix(store.db, back.tolist(), state.tag_ids), entering_labels]))
    report.retagged, report.added, report.ntotal = len(changed), len(entering), int(state.index.ntotal)


def sync_training(store: StoreDir, ids: NDArray[np.int64], progress: Progress | None = None) -> GrowReport:
    """The training images ``ids`` (their rows and tags already in the database, their features cached) into the
    index and the statistics, as ``add`` puts them there."""
    state = _Open(store)
    report = GrowReport()
    report.grown = state.grow()
    apply_tags(state, np.asarray(sorted(ids), np.int64), report, progress or NoProgress(), defer=True)
    return report


def remove_images(paths: list[str], store_root: Path, progress: Progress | None = None, *,
                  wait: bool | float = False) -> GrowReport:
    """Take training images (by path, as stored) out of the index and the statistics; their tags no longer vote."""
    store = StoreDir.open(Path(store_root), write=True, wait=wait)
    try:
        state = _Open(store)
        with store.db.connect() as conn:
            found = {p: (int(i), s) for p, i, s in conn.execute(select(images.c.path, images.c.id, images.c.split)
                                                                .where(images.c.path.in_(paths)))}
        unknown = [p for p in paths if p not in found]
        if unknown:
            raise AnnotError(f"{unknown[0]}: not an image of {store.root} ({len(unknown)} such); nothing removed")
        tested = [p for p, (_, s) in found.items() if s not in (TRAIN, REMOVED)]
        if tested:
            raise AnnotError(f"{tested[0]}: a {found[tested[0]][1]} image of {store.root}, not a training image "
                             f"({len(tested)} such); nothing removed")
        ids = np.array(sorted(i for i, _ in found.values()), np.int64)
        gone = ids[np.isin(ids, state.ids)]
        report = GrowReport(skipped=len(ids) - len(gone))
        if len(gone):
            stats, _ = state.statistics_of(gone, state.indexed_labels)
            if stats is not None:
                state.stats = state.stats - stats
            state.remove_rows(gone)
            keep = ~np.isin(state.ids, gone)
            state.commit(state.ids[keep], state.labels[keep])
        with store.db.begin() as conn:  # after the switch: a crash before it leaves them indexed and train
            update_rows(conn, images, [images.c.id.in_(ids.tolist())], {"split": REMOVED})
        report.removed, report.ntotal = len(gone), int(state.index.ntotal)
        return report
    finally:
        store.close()


def refit(store_root: Path, progress: Progress | None = None, *, wait: bool | float = False) -> GrowReport:
    """Re-estimate the projection from the accumulated statistics and rebuild the indexes (one streaming pass)."""
    progress = progress or NoProgress()
    store = StoreDir.open(Path(store_root), write=True, wait=wait)
    try:
        state = _Open(store)
        s = state.manifest.settings
        if state.fitted < len(state.vocabulary):  # words added by corrections enter the text side: statistics anew
            state.fitted = len(state.vocabulary)
            state.E, state.has_vector, _ = word_matrix(state.words, state.vocabulary)
            stats, _ = state.statistics_of(state.ids, state.indexed_labels)
            if stats is None:
                raise StoreError(f"{store.root}: no indexed image has a tag the text view can represent")
            state.stats = stats
        cca = linear_cca(s.projection).fit_statistics(state.stats)
        path = store.indexes_dir / ".refit.npy"
        try:
            with progress.task("projecting", len(state.ids)) as advance:
                rows, ids = project_to_file(state.chunks(state.ids, state.indexed_labels), cca, state.E,
                                            state.has_vector, state.view, state.normalization, state.space.value,
                                            len(state.ids), len(cca.canonical_correlations_), path, advance)
            labels = state.indexed_labels(ids)
            state.index, info = build_image_index(state.manifest.index.factory, rows, ids, progress, s.scoring.k,
                                                  s.scoring.depth, labels, s.scoring, s.index.tag_agreement)
            words = build_word_index(cca, state.E, state.has_vector, s.text.view, state.tag_ids)
            state.commit(ids, labels, cca, words, info.search, info.tuning())
        finally:
            path.unlink(missing_ok=True)
        return GrowReport(ntotal=int(state.index.ntotal), refitted=True)
    finally:
        store.close()


__all__ = ["GrowReport", "add_images", "refit", "remove_images"]
