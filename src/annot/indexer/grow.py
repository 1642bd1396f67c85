"""Growing and shrinking a store without re-indexing: ``annot add``, ``annot remove``, ``annot refit``.

``add`` imports, extracts and projects new tagged images with the fitted projection (no refit) and adds them to the
image index; ``remove`` takes images out of the index (their tags no longer vote; their rows stay in the database
with split ``removed``); both keep the CCA sufficient statistics up to date. ``refit`` re-estimates the projection
from those statistics and rebuilds the indexes in one streaming pass. Each writes new files under new names and
switches the manifest last, so a crash leaves the previous store readable, and rerunning finishes the job:
``add`` adds the imported images the index does not hold yet, ``remove`` removes those it still holds.
Fitted baselines are dropped (they were fitted on the old training set).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import update

from annot.errors import AnnotError, StoreError
from annot.features.encoders import encoder_of_manifest
from annot.features.words import load_word_vectors
from annot.indexer.build import (
    TRAIN,
    IndexConfig,
    annotation_tagger,
    build_image_index,
    build_word_index,
    check_held_out_size,
    extract_features,
    save_standards,
)
from annot.indexer.corpus import read_corpus
from annot.indexer.features import FeatureCache
from annot.indexer.stream import chunk_rows, chunk_statistics, project_to_file, training_chunks
from annot.progress import NoProgress, Progress
from annot.projection import load_projection
from annot.projection.cca import CCAStatistics, LinearCCA
from annot.retrieval.ann import set_search
from annot.retrieval.indexes import load_index, save_index
from annot.retrieval.scoring import STANDARDIZED
from annot.schema import images
from annot.store import Store, atomic_write, save_arrays

REMOVED = "removed"
Chunks = Callable[[], Iterator[tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.bool_]]]]


@dataclass
class GrowReport:
    added: int = 0
    removed: int = 0
    skipped: int = 0  # already in (add) or already out (remove), or without usable tags
    ntotal: int = 0
    refitted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"added": self.added, "removed": self.removed, "skipped": self.skipped, "indexed": self.ntotal,
                "refitted": self.refitted}


class _Open:
    """A store's linear-CCA state: manifest, projection, statistics, image index and its ids."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.manifest = store.manifest()
        m = self.manifest
        if m["projection"]["kind"] != "linear-cca" or not m["projection"].get("statistics"):
            raise StoreError(f"{store.root}: add, remove and refit need a linear-cca store indexed by this version of annot")
        self.vocabulary = tuple(m["vocabulary"]["words"])
        self.tag_ids = [int(t) for t in m["vocabulary"]["tag_ids"]]
        self.text, self.normalization = m["text"], m["projection"]["normalization"]
        self.space = m["projection"].get("space", "image")  # stores from before --space compared with U
        words = load_word_vectors(m["words"]["source"])
        self.E, missing = words.matrix(self.vocabulary)
        self.has_vector = np.array([w not in set(missing) for w in self.vocabulary])
        path = store.path(m["projection"]["file"])
        with np.load(path) as arrays:
            self.projection = load_projection("linear-cca", dict(arrays), path)
        with np.load(store.path(m["projection"]["statistics"])) as arrays:
            self.stats = CCAStatistics.from_arrays(dict(arrays))
        self.index = load_index(store.path(m["index"]["file"]))
        set_search(self.index, dict(m["index"].get("search") or {}))
        self.ids = np.load(store.path(m["index"]["ids_file"]))
        self.cache = FeatureCache(store.features_dir / m["encoder"]["key"], int(m["encoder"]["dim"]))

    def chunks(self, ids: NDArray[np.int64]) -> Chunks:
        return lambda: training_chunks(self.store, self.cache, ids, self.tag_ids)

    def statistics_of(self, ids: NDArray[np.int64]) -> tuple[CCAStatistics | None, NDArray[np.int64]]:
        """Statistics of the usable images among ``ids``, and those images' ids."""
        stats, used_ids = None, []
        for chunk_ids, X, labels in self.chunks(ids)():
            part, keep = chunk_statistics(X, labels, self.E, self.has_vector, self.text, self.normalization)
            if part is not None:
                stats = part if stats is None else stats + part
                used_ids.append(chunk_ids[keep])
        return stats, (np.concatenate(used_ids) if used_ids else np.zeros(0, np.int64))

    def commit(self, ids: NDArray[np.int64], projection: LinearCCA | None = None, word_index: Any = None) -> None:
        """Write the index, its ids, the statistics (and a refitted projection) under new names; switch the manifest."""
        m = self.manifest
        digest = hashlib.sha256(np.ascontiguousarray(ids).tobytes())
        digest.update(np.ascontiguousarray(self.stats.xy).tobytes())
        tag = digest.hexdigest()[:12]
        files = {"images": f"indexes/images-{tag}.faiss", "image_ids": f"indexes/images-{tag}.ids.npy",
                 "statistics": f"models/statistics-{tag}.npz"}
        save_index(self.index, self.store.path(files["images"]))
        atomic_write(self.store.path(files["image_ids"]), lambda fh: np.save(fh, ids))
        save_arrays(self.store.path(files["statistics"]), self.stats.to_arrays())
        m["index"].update({"file": files["images"], "ids_file": files["image_ids"], "ntotal": int(self.index.ntotal)})
        m["projection"]["statistics"] = files["statistics"]
        if projection is not None:
            files["projection"] = f"models/projection-{tag}.npz"
            files["words"] = f"indexes/words-{tag}.faiss"
            save_arrays(self.store.path(files["projection"]), projection.to_arrays())
            save_index(word_index, self.store.path(files["words"]))
            m["projection"]["file"] = files["projection"]
            m["projection"]["canonical_correlations"] = [round(float(c), 6) for c in projection.canonical_correlations_]
            m["word_index"]["file"] = files["words"]
        m["counts"]["train_images"] = int(self.index.ntotal)
        m.pop("methods", None)
        m.pop("standards", None)  # the words' standards depend on the indexed images
        self.store.write_manifest(m)
        referenced = {m["projection"]["file"], m["projection"]["statistics"], m["index"]["file"], m["index"]["ids_file"],
                      m["word_index"]["file"]}
        if m.get("annotation", {}).get("score") in STANDARDIZED:
            referenced.add(save_standards(self.store, tag))
        self.store.remove_unreferenced(referenced)


def add_images(corpus_path: Path, store_root: Path, *, strict: bool = False, progress: Progress | None = None) -> GrowReport:
    """Add a corpus's tagged images to the store's index with the fitted projection (no refit)."""
    progress = progress or NoProgress()
    store = Store.open(Path(store_root))
    try:
        state = _Open(store)
        corpus = read_corpus(Path(corpus_path), state.vocabulary)
        if state.manifest.get("annotation", {}).get("score") == "standardized-held-out":  # before anything is written
            check_held_out_size("linear-cca", len(state.ids) + len(corpus.entries))
        encoder = encoder_of_manifest(state.manifest["encoder"])
        items, _, _, _, _ = extract_features(store, corpus, TRAIN, encoder, strict=strict, batch_size=32, progress=progress)
        candidates = np.array(sorted({i for i, _ in items} - set(state.ids.tolist())), np.int64)
        report = GrowReport(skipped=len(items) - len(candidates))
        stats, new_ids = state.statistics_of(candidates)
        report.skipped += len(candidates) - len(new_ids)
        if stats is not None:
            with progress.task("adding to the index", len(new_ids)) as advance:
                for ids, X, labels in state.chunks(new_ids)():
                    rows, keep = chunk_rows(state.projection, X, labels, state.E, state.has_vector, state.text,
                                            state.normalization, state.space)
                    state.index.add_with_ids(rows, ids[keep])
                    advance(len(ids))
            state.stats = state.stats + stats
            state.commit(np.concatenate([state.ids, new_ids]))
            with store.db.begin() as conn:  # images removed earlier and added again are training images again
                conn.execute(update(images).where(images.c.id.in_(new_ids.tolist())).values(split=TRAIN))
        report.added, report.ntotal = len(new_ids), int(state.index.ntotal)
        return report
    finally:
        store.close()


def remove_images(paths: list[str], store_root: Path, progress: Progress | None = None) -> GrowReport:
    """Take images (by path, as stored) out of the index and the statistics; their tags no longer vote."""
    import faiss

    store = Store.open(Path(store_root))
    try:
        state = _Open(store)
        with store.db.connect() as conn:
            found = dict(conn.execute(images.select().with_only_columns(images.c.path, images.c.id)
                                      .where(images.c.path.in_(paths))).all())
        unknown = [p for p in paths if p not in found]
        if unknown:
            raise AnnotError(f"{unknown[0]}: not an image of {store.root} ({len(unknown)} such)")
        ids = np.array(sorted(found.values()), np.int64)
        gone = ids[np.isin(ids, state.ids)]
        report = GrowReport(skipped=len(ids) - len(gone))
        if len(gone):
            stats, _ = state.statistics_of(gone)
            if stats is not None:
                state.stats = state.stats - stats
            try:
                removed = state.index.remove_ids(faiss.IDSelectorBatch(gone))
            except RuntimeError as exc:
                raise StoreError(f"{store.root}: a {state.manifest['index'].get('factory')} index cannot remove images; "
                                 "re-index without them (annot index) or use a Flat or IVF index") from exc
            if removed != len(gone):
                raise StoreError(f"{store.root}: the index held {removed} of {len(gone)} images to remove")
            state.commit(state.ids[~np.isin(state.ids, gone)])
        with store.db.begin() as conn:  # after the switch: a crash before it leaves them indexed and train
            conn.execute(update(images).where(images.c.id.in_(ids.tolist())).values(split=REMOVED))
        report.removed, report.ntotal = len(gone), int(state.index.ntotal)
        return report
    finally:
        store.close()


def refit(store_root: Path, progress: Progress | None = None) -> GrowReport:
    """Re-estimate the projection from the accumulated statistics and rebuild the indexes (one streaming pass)."""
    progress = progress or NoProgress()
    store = Store.open(Path(store_root))
    try:
        state = _Open(store)
        p = state.manifest["projection"]
        cca = LinearCCA(p.get("n_components"), p["reg_x"], p["reg_y"]).fit_statistics(state.stats)
        path = store.indexes_dir / ".refit.npy"
        try:
            with progress.task("projecting", len(state.ids)) as advance:
                rows, ids = project_to_file(state.chunks(state.ids), cca, state.E, state.has_vector, state.text,
                                            state.normalization, state.space, len(state.ids), len(cca.canonical_correlations_), path, advance)
            factory = state.manifest["index"].get("factory") or "Flat"
            annotation = state.manifest.get("annotation", {})
            tagger = None if factory == "Flat" else annotation_tagger(store, ids, state.tag_ids, annotation)
            agreement = float(state.manifest.get("config", {}).get("tag_agreement", IndexConfig.tag_agreement))
            state.index, info = build_image_index(factory, rows, ids, progress, int(annotation.get("k", IndexConfig.k)),
                                                  int(annotation.get("depth") or 0), tagger, agreement)
            state.manifest["index"].update(info.manifest())
            words = build_word_index(cca, state.E, state.has_vector, state.text, state.tag_ids)
            state.commit(ids, cca, words)
        finally:
            path.unlink(missing_ok=True)
        return GrowReport(ntotal=int(state.index.ntotal), refitted=True)
    finally:
        store.close()


__all__ = ["GrowReport", "add_images", "refit", "remove_images"]
