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
from annot.evaluation.metrics import Summary, WordMetrics, per_word_metrics, predictions_matrix, summarize
from annot.indexer.build import TRAIN, extract_features
from annot.indexer.corpus import read_corpus
from annot.progress import NoProgress, Progress
from annot.retrieval.model import CCA_METHODS, AnnotationModel, Prediction
from annot.schema import images, predictions, runs, word_metrics
from annot.schema.database import insert_rows, next_id
from annot.schema.queries import label_matrix
from annot.store import Store

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
    store: Store, method: str, params: dict[str, Any], dataset: str, image_ids: list[int],
    preds: list[Prediction], tag_ids: list[int], metrics: WordMetrics, summary: Summary,
) -> int:
    """Write runs, predictions and word_metrics rows in one transaction; returns the run id."""
    manifest_sha = store.manifest_sha()
    with store.db.begin() as conn:
        run_id = next_id(conn, runs)
        conn.execute(runs.insert().values(
            id=run_id, created_at=datetime.now(UTC).replace(tzinfo=None), method=method,
            params_json=json.dumps(params, sort_keys=True), dataset=dataset, store_manifest_sha=manifest_sha,
            precision=summary.precision, recall=summary.recall, f1=summary.f1, n_plus=summary.n_plus,
            n_images=summary.n_images,
        ))
        insert_rows(conn, predictions, (
            {"run_id": run_id, "image_id": image_id, "rank": rank + 1, "tag_id": tag_ids[int(w)], "score": float(s)}
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
    method: str | None = None,
    split: str = "test",
    record: bool = True,
    strict: bool = False,
    progress: Progress | None = None,
    **given: Any,
) -> EvalResult:
    """Annotate every image of a labelled corpus file and score the tags per word over the store's vocabulary.
    ``given`` are annotation settings (``AnnotationModel.settings``) that override the store's."""
    progress = progress or NoProgress()
    store = Store.open(Path(store_root))
    try:
        manifest = store.manifest()
        vocabulary = tuple(manifest["vocabulary"]["words"])
        tag_ids = [int(t) for t in manifest["vocabulary"]["tag_ids"]]
        corpus = read_corpus(Path(corpus_path), vocabulary)
        with store.db.connect() as conn:
            train_paths = {p for (p,) in conn.execute(select(images.c.path).where(images.c.split == TRAIN))}
        leaked = [e for e in corpus.entries if str(e.path) in train_paths]
        if leaked:
            raise CorpusError(
                f"{corpus.source}:{leaked[0].line}: {leaked[0].path} is a training image of this store "
                f"({len(leaked)} such); evaluating on it would leak its own tags"
            )
        spec = manifest["encoder"]
        model = AnnotationModel(store)
        encoder = model.encoder_for(method)
        items, cache, unreadable, _, _ = extract_features(
            store, corpus, split, encoder, strict=strict, batch_size=32, progress=progress
        )
        if not items:
            raise CorpusError(f"{corpus.source}: no readable images to evaluate")
        ids = [i for i, _ in items]
        X = cache.load(ids)
        with progress.task("annotating", None):
            preds = model.predict(X, method, **given)
        truth = label_matrix(store.db, ids, tag_ids)
        metrics = per_word_metrics(truth, predictions_matrix([p.words for p in preds], len(tag_ids)))
        summary = summarize(metrics, n_images=len(ids))
        used = model.settings(method, **given)
        params = {**used, "projection": manifest["projection"]["kind"], "encoder": spec["key"], "text": manifest["text"]}
        if used["method"] not in CCA_METHODS:  # a baseline: its own fitted settings, not the CCA ones
            params = {"method": used["method"], "n_tags": used["n_tags"], "encoder": spec["key"],
                      **model.method_params(str(used["method"]))}
        run_id = None
        if record:
            run_id = record_run(store, str(used["method"]), params, str(corpus.source.resolve()), ids, preds, tag_ids, metrics, summary)
        return EvalResult(summary, list(vocabulary), metrics, run_id, str(used["method"]), params, unreadable, corpus.dropped_tags)
    finally:
        store.close()
