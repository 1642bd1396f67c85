"""Reading stored evaluation runs back: listing them, read-only SQL, and comparing two runs word by word."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from annot.errors import NotFound
from annot.schema import image_tags, images, runs, tags, word_metrics
from annot.store import StoreDir


@dataclass(frozen=True)
class RunRow:
    id: int
    created_at: datetime
    method: str
    dataset: str
    params: dict[str, Any]
    precision: float
    recall: float
    f1: float
    n_plus: int
    n_images: int


@dataclass(frozen=True)
class WordChange:
    word: str
    f1_a: float
    f1_b: float
    n_truth: int

    @property
    def delta(self) -> float:
        return self.f1_b - self.f1_a


def list_runs(store: StoreDir) -> list[RunRow]:
    with store.db.connect() as conn:
        rows = conn.execute(select(runs).order_by(runs.c.id)).mappings().all()
    return [
        RunRow(r["id"], r["created_at"], r["method"], r["dataset"], json.loads(r["params_json"]),
               r["precision"], r["recall"], r["f1"], r["n_plus"], r["n_images"])
        for r in rows
    ]


@dataclass(frozen=True)
class WordMetrics:
    """One word's result in a run, with how many training images carry it."""

    word: str
    precision: float
    recall: float | None  # None: the word has no truth in the run's images
    f1: float
    n_truth: int
    train_frequency: int

    def to_dict(self) -> dict[str, Any]:
        return {"word": self.word, "precision": self.precision, "recall": self.recall, "f1": self.f1,
                "n_truth": self.n_truth, "train_frequency": self.train_frequency}


def run_words(store: StoreDir, run_id: int) -> list[WordMetrics]:
    """A run's per-word metrics (what ``annot report`` charts), most frequent training word first."""
    with store.db.connect() as conn:
        if conn.execute(select(runs.c.id).where(runs.c.id == run_id)).first() is None:
            raise NotFound(f"{store.root}: no run {run_id} (see `annot runs`)")
        frequency: dict[int, int] = dict(conn.execute(
            select(image_tags.c.tag_id, func.count()).join(images, images.c.id == image_tags.c.image_id)
            .where(images.c.split == "train").group_by(image_tags.c.tag_id)).tuples().all())
        rows = conn.execute(select(tags.c.word, word_metrics).join(tags, tags.c.id == word_metrics.c.tag_id)
                            .where(word_metrics.c.run_id == run_id)).mappings().all()
    out = [WordMetrics(str(r["word"]), float(r["precision"]), None if r["recall"] is None else float(r["recall"]),
                       float(r["f1"]), int(r["n_truth"]), int(frequency.get(r["tag_id"], 0))) for r in rows]
    return sorted(out, key=lambda w: (-w.train_frequency, w.word))


def compare_runs(store: StoreDir, run_a: int, run_b: int) -> list[WordChange]:
    """Per-word F1 of two runs, largest change first (words missing from either run are left out)."""
    with store.db.connect() as conn:
        known = {r for (r,) in conn.execute(select(runs.c.id).where(runs.c.id.in_([run_a, run_b])))}
        for run in (run_a, run_b):
            if run not in known:
                raise NotFound(f"{store.root}: no run {run} (see `annot runs`)")
        rows = conn.execute(
            select(word_metrics.c.run_id, word_metrics.c.tag_id, word_metrics.c.f1, word_metrics.c.n_truth, tags.c.word)
            .join(tags, tags.c.id == word_metrics.c.tag_id)
            .where(word_metrics.c.run_id.in_([run_a, run_b]))
        ).all()
    a = {t: (f1, n, w) for run, t, f1, n, w in rows if run == run_a}
    b = {t: f1 for run, t, f1, _, _ in rows if run == run_b}
    changes = [WordChange(w, f1, b[t], n) for t, (f1, n, w) in a.items() if t in b]
    return sorted(changes, key=lambda c: (-abs(c.delta), c.word))
