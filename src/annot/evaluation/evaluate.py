"""``annot eval``: annotate a labelled set with a store, score it per word, and record the run in the store."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from annot.errors import CorpusError
from annot.indexer.corpus import Corpus, read_corpus
from annot.indexer.extract import extract_features
from annot.indexer.importer import TRAIN, probe
from annot.methods import Prediction
from annot.metrics import Summary, WordMetrics, per_word_metrics, predictions_matrix, summarize
from annot.model import StoreModel
from annot.progress import NoProgress, Progress
from annot.schema import images, predictions, runs, word_metrics
from annot.schema.queries import label_matrix
from annot.schema.writes import insert_rows, next_id
from annot.settings import ScoringSettings
from annot.store import StoreDir

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    summary: Summary
    words: list[str]
    metrics: WordMetrics
    run_id: int | None
    method: str
    params: dict[str, Any]
    unreadable: dict[str, str] = field(default_factory=dict)
    dropped_tags: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "method": self.method,
            "params": self.params,
            "summary": self.summary.as_percent(),
            "unreadable": len(self.unreadable),
            "tags_outside_vocabulary": sum(self.dropped_tags.values()),
        }


def record_run(
    store: StoreDir, method: str, params: dict[str, Any], dataset: str, image_ids: list[int],
    preds: list[Prediction], tag_ids: list[int], metrics: WordMetrics, summary: Summary,
    manifest_sha: str | None = None,
) -> int:
    """Write runs, predictions and word_metrics rows in one transaction (``manifest_sha``: of the manifest the
    predictions were made with, default the store's now); returns the run id."""
    manifest_sha = manifest_sha or store.manifest_sha()
    with store.db.begin() as conn:
        run_id = next_id(conn, runs)
        insert_rows(conn, runs, [{
            "id": run_id, "created_at": datetime.now(UTC).replace(tzinfo=None), "method": method,
            "params_json": json.dumps(params, sort_keys=True), "dataset": dataset, "store_manifest_sha": manifest_sha,
            "precision": summary.precision, "recall": summary.recall, "f1": summary.f1, "n_plus": summary.n_plus,
            "n_images": summary.n_images,
        }])
        insert_rows(conn, predictions, (
            {"run_id": run_id, "image_id": image_id, "rank": rank + 1, "tag_id": tag_ids[int(w)], "score": float(s),
             "confidence": None if p.confidence is None else float(p.confidence[rank])}
            for image_id, p in zip(image_ids, preds, strict=True)
            for rank, (w, s) in enumerate(zip(p.words, p.scores, strict=True))
        ))
        insert_rows(conn, word_metrics, (
            {"run_id": run_id, "tag_id": tag_ids[v], "precision": float(metrics.precision[v]),
             "recall": None if np.isnan(metrics.recall[v]) else float(metrics.recall[v]), "f1": float(metrics.f1[v]),
             "n_truth": int(metrics.n_truth[v]), "n_predicted": int(metrics.n_predicted[v]),
             "n_correct": int(metrics.n_correct[v])}
            for v in range(len(tag_ids))
        ))
    return run_id


def evaluate(
    store_root: Path,
    corpus_path: Path,
    *,
    scoring: ScoringSettings | None = None,
    split: str = "test",
    record: bool = True,
    strict: bool = False,
    progress: Progress | None = None,
    wait: bool | float = False,
) -> EvalResult:
    """Annotate every image of a labelled corpus file and score the tags per word over the store's vocabulary.
    ``scoring`` defaults to the store's own settings. Images whose path or content is a training image of the store
    are refused: evaluating on them would leak their own tags. It takes turns with the store's other writers: the
    store is held while the corpus's rows and the run are written, not while the images are read and annotated."""
    progress = progress or NoProgress()
    store = StoreDir.open(Path(store_root), write=True, wait=wait, hold=False)
    try:
        manifest_sha = store.manifest_sha()
        manifest = store.manifest()
        scoring = scoring or manifest.settings.scoring
        vocabulary = tuple(manifest.vocabulary.words)
        tag_ids = list(manifest.vocabulary.tag_ids)
        corpus = read_corpus(Path(corpus_path), vocabulary)
        _refuse_training_images(store, corpus, progress)
        model = StoreModel(store)
        method = model.method(scoring.method)
        encoder = method.encoder()
        extracted = extract_features(store, corpus, split, encoder, upright=model.upright, strict=strict,
                                     batch_size=manifest.settings.batch_size, progress=progress,
                                     dtype=manifest.settings.feature_dtype.value)
        if not extracted.items:
            raise CorpusError(f"{corpus.source}: no readable images to evaluate")
        ids = [i for i, _ in extracted.items]
        X = extracted.cache.load(ids)
        with progress.task("annotating", None):
            preds = model.predict(X, scoring)
        truth = label_matrix(store.db, ids, tag_ids)
        metrics = per_word_metrics(truth, predictions_matrix([p.words for p in preds], len(tag_ids)))
        summary = summarize(metrics, n_images=len(ids))
        cut = model.confidence_cut(scoring)
        params = {**method.params(scoring), **({"min_confidence": cut} if cut is not None else {})}
        run_id = None
        if record:
            with store.change():
                run_id = record_run(store, scoring.method, params, str(corpus.source.resolve()), ids, preds, tag_ids,
                                    metrics, summary, manifest_sha)
        return EvalResult(summary, list(vocabulary), metrics, run_id, scoring.method, params, extracted.unreadable,
                          corpus.dropped_tags)
    finally:
        store.close()


def _refuse_training_images(store: StoreDir, corpus: Corpus, progress: Progress) -> None:
    """A clear error naming the first corpus image that is a training image of the store, by path or by content."""
    with store.db.connect() as conn:
        training = {p: h for p, h in conn.execute(select(images.c.path, images.c.sha256)
                                                  .where(images.c.split == TRAIN))}
        known = {p: h for p, h in conn.execute(select(images.c.path, images.c.sha256))}
    by_content = {h: p for p, h in training.items()}
    same_path = [e for e in corpus.entries if str(e.path) in training]
    if same_path:
        e = same_path[0]
        raise CorpusError(f"{corpus.source}:{e.line}: {e.path} is a training image of this store ({len(same_path)} "
                          "such); evaluating on it would leak its own tags")
    copies = []
    with progress.task("checking for copies of training images", len(corpus.entries)) as advance:
        for e in corpus.entries:
            digest = known.get(str(e.path))
            if digest is None:
                found = probe(e.path)
                digest = found[0] if isinstance(found, tuple) else None
            if digest is not None and digest in by_content:
                copies.append((e, by_content[digest]))
            advance(1)
    if copies:
        e, twin = copies[0]
        raise CorpusError(f"{corpus.source}:{e.line}: {e.path} has the same content as the training image {twin} "
                          f"({len(copies)} such); evaluating on it would leak its own tags")
