"""The photo library (``annot annotate``): a user's photos tagged by the store's model and kept in the store.

Each photo is a row of ``images`` (split ``collection``) with its file's size and modification time
(``photo_files``), its tags with score and confidence (``annotations``), its features in the store's feature cache,
and its row of the shared space in the collection's FAISS index (ids: image ids), which ``annot search`` reads.

A run walks the given files and folders, skips what it annotated before and has not changed (size and mtime; a
changed one is hashed, and only a new content is read again), re-annotates what changed or what an older model
annotated (its features are cached: nothing is decoded again), and marks photos that vanished from the folders it
walks. Photos go through in chunks: decode and encode (on a Ray cluster with ``ray``), score, write their rows, add
their vectors; every ``COMMIT_SECONDS`` the index is saved under a new name and the manifest switched, so memory
stays bounded and a kill loses at most the last chunks, which the next run redoes (it first puts the index back in
step with the database). Unreadable files are counted, listed and kept as such, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select

from annot.errors import AnnotError
from annot.features.images import ImageInfo, UnreadableImage, exif_facts, image_size, probe_image
from annot.indexer.distributed import connect, extract_with_ray
from annot.library.identity import follow_identity, link_copies
from annot.library.scan import (
    FEW,
    NO_FACTS,
    TRAINING_SPLITS,
    AnnotateReport,
    FileFacts,
    Known,
    Todo,
    photo_paths,
    recorded,
    scan_photos,
)
from annot.library.vectors import (
    MAX_LAYERS,
    Layer,
    LibraryVectors,
    build_library_index,
    merge_layers,
    needs_rebuild,
    read_library,
    remove,
    vectors_of,
)
from annot.methods.cnnr.method import CNNRMethod
from annot.model import StoreModel
from annot.progress import NoProgress, Progress
from annot.projection import correlation_rows
from annot.schema import images, photo_annotations, photo_files
from annot.schema.writes import delete_rows, insert_columns, insert_rows, next_id, update_rows
from annot.settings import ScoringSettings
from annot.store import StoreDir
from annot.store.manifest import CollectionRecord

log = logging.getLogger(__name__)

COLLECTION = "collection"  # the images.split of the library's photos
CHUNK = 1024  # photos decoded, scored and written together
COMMIT_SECONDS = 60.0  # how often the collection index is saved and the manifest switched during a long run


class Library:
    """The photo library of a store opened for writing: its collection index and what writes photos into it."""

    def __init__(self, store: StoreDir, scoring: ScoringSettings | None = None) -> None:
        self.store = store
        self.model = StoreModel(store)
        self.scoring = scoring or self.model.settings.scoring
        method = self.model.method(self.scoring.method)
        if isinstance(method, CNNRMethod):
            raise AnnotError("annot annotate places photos in the store's shared space with the store's encoder; "
                             "cnn-r reads its own network (use annot query --method cnn-r)")
        self.cache = self.model.feature_cache()
        # what photo_files.model records (the model's state and the scoring settings): re-scored when it moves on
        settings = json.dumps(self.scoring.to_dict(), sort_keys=True, default=str)
        self.model_tag = f"{self.model.revision}|{hashlib.sha256(settings.encode()).hexdigest()[:8]}"
        self.dirty = False
        self.record = self.store.manifest().collection
        self.vectors = self._load_vectors()
        self.ids: set[int] = set(self.vectors.ids().tolist())  # the photos the index holds, with the pending ones
        self._pending: dict[int, NDArray[np.float32]] = {}  # rows added or replaced since the last commit
        self._removed: set[int] = set()  # photos taken out since the last commit

    # -- the collection index ------------------------------------------------------------------------------------
    def _load_vectors(self) -> LibraryVectors:
        """The library's vectors as the manifest names them, or none (none yet, or made with another projection:
        then every vector is made anew from the cached features by :meth:`reconcile`)."""
        d = len(self.model.manifest.projection.canonical_correlations)
        record = self.record
        if record is None:
            return LibraryVectors(d)
        if record.projection not in (None, self.model.manifest.projection.file.path):
            self.dirty = True  # the store was indexed again or refitted
            return LibraryVectors(d)
        vectors = read_library(self.store, record, d)
        if vectors is None:  # made in another space
            self.dirty = True
            return LibraryVectors(d)
        return vectors

    def vectors_of(self, X: NDArray[np.float32]) -> NDArray[np.float32]:
        """Photos' rows of the shared space (their projections T as correlation rows)."""
        return correlation_rows(self.model.project(X))

    def put(self, ids: NDArray[np.int64], rows: NDArray[np.float32]) -> None:
        for image_id, row in zip(np.asarray(ids, np.int64).tolist(), np.asarray(rows, np.float32), strict=True):
            self._pending[image_id] = row
            self._removed.discard(image_id)
            self.ids.add(image_id)
        self.dirty = True

    def drop(self, ids: Sequence[int] | NDArray[np.int64]) -> None:
        for image_id in np.asarray(ids, np.int64).tolist():
            if image_id in self.ids:
                self._pending.pop(image_id, None)
                self._removed.add(image_id)
                self.ids.discard(image_id)
                self.dirty = True

    def commit(self) -> None:
        """Write what changed since the last commit as a layer of the library's vectors (merged, or the main
        index built anew, as :mod:`annot.library.vectors` says) and switch the manifest to it (the database is
        published first)."""
        with self.store.change():
            if self.dirty:
                self._commit()
            else:
                self.store.publish()

    def _commit(self) -> None:
        fresh = self.store.manifest().collection
        if fresh != self.record and fresh is not None:  # another writer committed photos (a kept upload)
            vectors = read_library(self.store, fresh, self.vectors.d)
            if vectors is not None:
                self.record, self.vectors = fresh, vectors
                self.ids = (set(vectors.ids().tolist()) | set(self._pending)) - self._removed
        d, vectors = self.vectors.d, self.vectors
        pending = np.array(sorted(self._pending), np.int64)
        layer = Layer(pending, np.stack([self._pending[i] for i in pending.tolist()]) if len(pending)
                      else np.zeros((0, d), np.float32), np.array(sorted(self._removed), np.int64))
        tag = f"{int(time.time() * 1000):x}"
        base = self.record if self.record is not None and vectors.main is not None else None
        if vectors.wants_rebuild(len(layer.ids) + len(layer.removed)) or base is None:
            vectors = self._rebuilt(LibraryVectors(d, vectors.main, vectors.main_ids, (*vectors.layers, layer),
                                                   vectors.info))
            record = CollectionRecord(self.store.save_index(f"indexes/collection-{tag}.faiss", vectors.main),
                                      self.store.save_array(f"indexes/collection-{tag}.ids.npy", vectors.main_ids),
                                      vectors.ntotal, factory=vectors.info.factory,
                                      projection=self.model.manifest.projection.file.path,
                                      tuning=vectors.info.to_dict())
        else:
            layers, files = (*vectors.layers, layer), (*base.layers,)
            if len(layers) > MAX_LAYERS:
                layers, files = (merge_layers(layers, d),), ()
            files = (*files, self.store.save_arrays(f"indexes/collection-{tag}.layer.npz", layers[-1].to_arrays()))
            vectors = LibraryVectors(d, vectors.main, vectors.main_ids, layers, vectors.info)
            record = replace(base, ntotal=vectors.ntotal, layers=files)
        self.store.write_manifest(self.store.manifest().touched(collection=record))
        self.store.remove_unreferenced()
        self.record, self.vectors = record, vectors
        self._pending, self._removed = {}, set()
        self.dirty = False

    def _rebuilt(self, vectors: LibraryVectors) -> LibraryVectors:
        """The main index with its layers folded in: built anew (none yet, or grown past what its kind serves),
        else the trained one with the layers' photos taken out and their rows put in."""
        import faiss

        if vectors.main is None or needs_rebuild(vectors.info, vectors.ntotal):
            rows, ids = vectors.all_vectors()
            index, info = build_library_index(rows, ids)
            return LibraryVectors(vectors.d, index, ids, (), info)
        index = faiss.clone_index(vectors.main)  # the main index is memory-mapped: changed in a copy
        remove(index, vectors.hidden)
        if len(vectors.recent_ids):
            rows, ids = vectors_of(vectors.recent, vectors.recent_ids), vectors.recent_ids
            for lo in range(0, len(ids), 65_536):
                index.add_with_ids(np.ascontiguousarray(rows[lo : lo + 65_536]), ids[lo : lo + 65_536])
        ids = np.concatenate([vectors.main_ids[~np.isin(vectors.main_ids, vectors.hidden)], vectors.recent_ids])
        return LibraryVectors(vectors.d, index, ids, (), vectors.info)

    def features_at_hand(self) -> set[int]:
        """The photos whose features the cache holds (not the ones that failed to decode)."""
        return set(self.cache.cached_ids().tolist()) - set(self.cache.failures())

    def reconcile(self) -> None:
        """Put the index back in step with the database after a killed run: annotated photos it lacks are added
        (from their cached features), photos it holds that are no longer annotated photos of the library go."""
        with self.store.db.connect() as conn:
            annotated = {int(i) for (i,) in conn.execute(
                select(photo_files.c.image_id).where(photo_files.c.state == "annotated"))}
        self.drop([i for i in self.ids if i not in annotated])
        lacking = np.array(sorted(annotated - self.ids), np.int64)
        cached = self.features_at_hand()
        lacking = lacking[np.isin(lacking, list(cached))] if len(lacking) else lacking
        for lo in range(0, len(lacking), CHUNK):
            part = lacking[lo : lo + CHUNK]
            self.put(part, self.vectors_of(self.cache.load(part)))

    # -- writing photos -----------------------------------------------------------------------------------------
    def write(self, ids: list[int], X: NDArray[np.float32], stats: dict[int, FileFacts] | None = None,
              taken: dict[int, datetime | None] | None = None) -> int:
        """Score photos whose features are ``X``, write their annotations (with ``stats``, their file facts and
        ``taken``, when they were taken, too) and vectors; returns how many already annotated photos' tags changed."""
        # a photo that joined the training index (corrected) is scored without its own vote
        predictions = self.model.predict(X, self.scoring, exclude=np.asarray(ids, np.int64))
        now = datetime.now(UTC).replace(tzinfo=None)
        tag_ids = np.asarray(self.model.tag_ids, np.int64)
        counts = [len(p.words) for p in predictions]
        rows = {"image_id": np.repeat(np.asarray(ids, np.int64), counts),
                "rank": np.concatenate([np.arange(1, c + 1) for c in counts] or [np.zeros(0, np.int64)]),
                "tag_id": tag_ids[np.concatenate([np.asarray(p.words, np.int64) for p in predictions] or
                                                 [np.zeros(0, np.int64)])],
                "score": np.concatenate([np.asarray(p.scores, np.float64) for p in predictions] or [np.zeros(0)]),
                "confidence": np.concatenate([np.full(len(p.words), np.nan) if p.confidence is None else
                                              np.asarray(p.confidence, np.float64) for p in predictions]
                                             or [np.zeros(0)])}
        with self.store.change(), self.store.db.begin() as conn:
            before: dict[int, set[int]] = {}
            span = photo_annotations.c.image_id.between(min(ids), max(ids))  # lets DuckDB skip the rest
            for image_id, tag_id in conn.execute(select(photo_annotations.c.image_id, photo_annotations.c.tag_id)
                                                 .where(span, photo_annotations.c.image_id.in_(ids))):
                before.setdefault(int(image_id), set()).add(int(tag_id))
            delete_rows(conn, photo_annotations, photo_annotations.c.image_id.in_(ids), keys=ids)
            insert_columns(conn, photo_annotations, rows)
            if stats is None:
                update_rows(conn, photo_files, [photo_files.c.image_id.in_(ids)],
                            {"annotated_at": now, "model": self.model_tag}, keys=ids)
            else:
                self._files(conn, [{"image_id": i, **stats[i].row(), "state": "annotated", "error": None,
                                    "annotated_at": now, "model": self.model_tag, "taken_at": (taken or {}).get(i)}
                                   for i in ids])
        if stats is not None:  # a new or changed photo: its vector
            self.put(np.asarray(ids, np.int64), self.vectors_of(X))
        else:  # re-scored: the index holds its vector for this projection (_load_index), unless it was out
            out = [r for r, i in enumerate(ids) if i not in self.ids]
            if out:
                self.put(np.asarray(ids, np.int64)[out], self.vectors_of(X[out]))
        after: dict[int, set[int]] = {}
        for image_id, p in zip(ids, predictions, strict=True):
            after[image_id] = {self.model.tag_ids[int(w)] for w in p.words}
        return sum(1 for i in before if before[i] != after.get(i, set()))

    def stale(self) -> list[int]:
        """Annotated photos scored by another state of the model (corrections, ``add``, ``refit`` or another index
        changed it since, or other scoring settings), or never: what re-scoring takes."""
        query = select(photo_files.c.image_id).where(photo_files.c.state == "annotated")
        query = query.where((photo_files.c.model != self.model_tag) | photo_files.c.model.is_(None))
        with self.store.db.connect() as conn:
            return sorted(int(i) for (i,) in conn.execute(query))

    def rescore(self, ids: list[int], progress: Progress, chunk: int | None = None) -> tuple[int, int]:
        """Score photos again from their cached features (nothing decoded); returns (re-scored, tags changed).
        Photos whose features are not cached (another encoder) are left to the caller."""
        cached = self.features_at_hand()
        ids = [i for i in ids if i in cached]
        changed = 0
        with progress.task("re-scoring the library", len(ids)) as advance:
            for part in _chunks(ids, chunk or CHUNK):
                changed += self.write(part, self.cache.load(np.asarray(part, np.int64)))
                advance(len(part))
        return len(ids), changed

    def _files(self, conn: Any, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        ids = [r["image_id"] for r in rows]
        delete_rows(conn, photo_files, photo_files.c.image_id.in_(ids), keys=ids)
        insert_rows(conn, photo_files, rows)

    def mark(self, conn: Any, ids: list[int], state: str, errors: dict[int, str] | None = None,
             stats: dict[int, FileFacts] | None = None) -> None:
        """Photos that could not be read, or vanished: kept with their state, out of the index."""
        if not ids:
            return
        known = {int(i): FileFacts(z or 0, m or 0, ino, ct) for i, z, m, ino, ct in conn.execute(
            select(photo_files.c.image_id, photo_files.c.size, photo_files.c.mtime_ns, photo_files.c.inode,
                   photo_files.c.ctime_ns).where(photo_files.c.image_id.in_(ids)))}
        stats = stats or {}
        self._files(conn, [{"image_id": i, **stats.get(i, known.get(i, NO_FACTS)).row(), "state": state,
                            "error": (errors or {}).get(i), "annotated_at": None, "model": None} for i in ids])
        self.drop(ids)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for lo in range(0, len(items), size):
        yield items[lo : lo + size]


def annotate_photos(store_root: Path, inputs: Sequence[Path], *, scoring: ScoringSettings | None = None,
                    batch_size: int | None = None, progress: Progress | None = None, wait: bool | float = False,
                    ray: str | None = None, chunk: int = CHUNK, retag: bool = False,
                    features: Mapping[Path, NDArray[np.floating]] | None = None, take_turns: bool = True,
                    rescore: bool = True, rescore_limit: int | None = None) -> AnnotateReport:
    """Annotate photos into the store's library: new and changed ones, skipping what is already annotated as it is;
    moved photos keep their identity, duplicates are linked (:mod:`annot.library.identity`). Every photo the model
    scored in another state (or with ``retag`` every photo) is re-scored from its cached features. ``features``:
    photos' features already computed with the store's encoder (a kept upload's), cached instead of extracted.
    ``take_turns``: hold the store's lock only while a change is written (a long run beside the server's writes);
    else for the whole run, which then publishes once (a kept upload's). Without ``rescore`` only the given photos
    are scored (a kept upload: the rest of the library is left to the next ``annot annotate``); ``rescore_limit``:
    at most this many are re-scored (a request's bounded share; ``stale_left`` says how many wait)."""
    progress = progress or NoProgress()
    started = time.perf_counter()
    paths, folders, lists = photo_paths(inputs)
    report = AnnotateReport(seen=len(paths))
    store = StoreDir.open(Path(store_root), write=True, wait=wait, hold=not take_turns)
    try:
        library = Library(store, scoring)
        if rescore:  # a kept upload leaves putting the index back in step after a kill to the next run
            library.reconcile()
        batch_size = batch_size or library.model.settings.batch_size
        known = recorded(store, paths if not folders and not lists and len(paths) <= FEW else None)
        scan = scan_photos(paths, known, progress, folders, lists)
        with store.change():
            identity = follow_identity(store, scan, known)
            if scan.touched:
                with store.db.begin() as conn:
                    for image_id, facts in scan.touched:
                        update_rows(conn, photo_files, [photo_files.c.image_id == image_id], facts.row(),
                                    keys=[image_id])
            if retag:  # every photo scored again; a killed run leaves the rest stale, so the next run finishes them
                with store.db.begin() as conn:
                    update_rows(conn, photo_files, [photo_files.c.state == "annotated"], {"model": None})
        report.moved, report.duplicates = identity.moved, identity.duplicates
        report.unchanged, report.training, errors = scan.unchanged, scan.training, scan.errors
        stale = (library.stale() if rescore else [])[:rescore_limit]
        todo = scan.todo + _not_cached(library, stale, known, {t.path for t in scan.todo})
        last_commit = time.monotonic()
        with progress.task("annotating photos", len(todo)) as advance:
            for part in _chunks(todo, chunk):
                _annotate_chunk(library, part, known, report, errors, batch_size, ray, features or {})
                advance(len(part))
                if time.monotonic() - last_commit > COMMIT_SECONDS:
                    library.commit()
                    last_commit = time.monotonic()
        with store.change():
            link_copies(store, identity, known, errors)
            report.missing = _mark_vanished(library, scan.vanished)
            _record_unreadable(library, known, errors)
        report.duplicates = identity.duplicates
        report.unreadable = errors
        rescoring = time.perf_counter()
        waiting = library.stale() if rescore else []
        report.rescored, report.retagged = library.rescore(waiting[:rescore_limit], progress)
        report.stale_left = len(waiting) - len(waiting[:rescore_limit])
        report.rescore_seconds = time.perf_counter() - rescoring
        library.commit()
        report.total = len(library.ids)
    finally:
        store.close()
    report.seconds = time.perf_counter() - started
    return report


def _not_cached(library: Library, stale: list[int], known: dict[str, Known], todo: set[Path]) -> list[Todo]:
    """Stale photos whose features are not in the cache (annotated with another encoder): read again, where their
    files are still there."""
    cached = set(library.cache.cached_ids().tolist())
    lacking = {i for i in stale if i not in cached}
    out = []
    for path, k in known.items():
        if k.image_id in lacking and k.facts is not None and Path(path) not in todo and Path(path).exists():
            out.append(Todo(Path(path), k.facts))
    return out


def _annotate_chunk(library: Library, part: list[Todo], known: dict[str, Known], report: AnnotateReport,
                    errors: dict[str, str], batch_size: int, ray: str | None,
                    features: Mapping[Path, NDArray[np.floating]]) -> None:
    """One chunk: rows for new photos, features (again where the content changed), annotations and vectors."""
    store = library.store
    new: list[dict[str, Any]] = []
    ids: dict[Path, int] = {}
    force: set[int] = set()
    stats: dict[int, FileFacts] = {}
    taken: dict[int, datetime | None] = {}
    when = {todo.path: exif_facts(todo.path)[0] for todo in part}  # read before the store is held
    now = datetime.now(UTC).replace(tzinfo=None)
    with store.change(), store.db.begin() as conn:
        start = next_id(conn, images)
        for todo in part:
            path, facts = todo.path, todo.facts
            seen = known.get(str(path))
            if seen is not None:
                image_id = seen.image_id
                if todo.changed and todo.digest is not None:  # a new content, hashed by the scan: its size here
                    try:
                        width, height = image_size(path)
                    except FileNotFoundError:
                        errors[str(path)] = "no such file"
                        continue
                    except UnreadableImage as exc:
                        errors[str(path)] = str(exc)
                        continue
                    update_rows(conn, images, [images.c.id == image_id],
                                {"sha256": todo.digest, "width": width, "height": height}, keys=[image_id])
                    force.add(image_id)  # features extracted again
            else:
                try:  # hashed already where the run looked for moved photos and duplicates
                    info = probe_image(path) if todo.digest is None else ImageInfo(todo.digest, *image_size(path))
                except FileNotFoundError:
                    errors[str(path)] = "no such file"
                    continue
                except UnreadableImage as exc:
                    errors[str(path)] = str(exc)
                    continue
                image_id = start + len(new)
                new.append({"id": image_id, "path": str(path), "sha256": info.sha256, "width": info.width,
                            "height": info.height, "split": COLLECTION, "added_at": now})
                known[str(path)] = Known(image_id, COLLECTION, info.sha256, None, None, None)
            ids[path] = image_id
            stats[image_id] = facts
            taken[image_id] = when[path]
        insert_rows(conn, images, new)
    items = [(ids[t.path], t.path) for t in part if t.path in ids]
    if not items:
        return
    given = [(i, p) for i, p in items if p in features and i not in force and
             np.shape(features[p]) == (library.cache.dim,)]
    if given:  # computed already (a kept upload's): cached as they are, so extraction skips them
        library.cache.write_part(np.stack([np.asarray(features[p], np.float32) for _, p in given]),
                                 np.array([i for i, _ in given], np.int64), {})
    if ray:
        extract_with_ray(connect(ray), library.cache, items, library.model.encoder(), batch_size, None, force=force)
    else:
        library.cache.extract(items, library.model.encoder(), batch_size=batch_size, force=force)
    failures = library.cache.failures()
    good = [(i, p) for i, p in items if i not in failures]
    for i, p in items:
        if i in failures:
            errors[str(p)] = failures[i].split(": ", 1)[-1]
    if good:
        good_ids = [i for i, _ in good]
        library.write(good_ids, library.cache.load(good_ids), stats, taken)
        for i, p in good:
            seen = known.get(str(p))
            if seen is not None and seen.state is not None:
                report.reannotated += 1
            else:
                report.annotated += 1
            known[str(p)] = replace(known[str(p)], state="annotated", model=library.model_tag, facts=stats[i])


def _mark_vanished(library: Library, gone: list[tuple[str, Known]]) -> list[str]:
    """Photos gone from their folders: marked missing, out of the index."""
    if gone:
        with library.store.db.begin() as conn:
            library.mark(conn, [k.image_id for _, k in gone], "missing")
    return [p for p, _ in gone]


def _record_unreadable(library: Library, known: dict[str, Known], errors: dict[str, str]) -> None:
    """Unreadable files are kept as such (with why), so an unchanged one is not tried again."""
    now = datetime.now(UTC).replace(tzinfo=None)
    rows: list[dict[str, Any]] = []
    marked: dict[int, str] = {}
    facts: dict[int, FileFacts] = {}
    with library.store.db.begin() as conn:
        start = next_id(conn, images)
        for path, why in errors.items():
            seen = known.get(path)
            if seen is None:
                image_id = start + len(rows)
                rows.append({"id": image_id, "path": path, "sha256": "", "width": 0, "height": 0,
                             "split": COLLECTION, "added_at": now})
            elif seen.state is None and seen.split in TRAINING_SPLITS:  # a training image of the store
                continue
            else:
                image_id = seen.image_id
            marked[image_id] = why
            try:
                facts[image_id] = FileFacts.of(Path(path).stat())
            except (OSError, RuntimeError):
                facts[image_id] = NO_FACTS
        insert_rows(conn, images, rows)
        library.mark(conn, list(marked), "unreadable", marked, facts)


__all__ = ["COLLECTION", "AnnotateReport", "Library", "annotate_photos"]
