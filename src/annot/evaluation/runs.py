"""Reading stored evaluation runs back: listing them, read-only SQL, and comparing two runs word by word."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from annot.errors import AnnotError
from annot.schema import runs, tags, word_metrics
from annot.store import Store


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


def list_runs(store: Store) -> list[RunRow]:
    with store.db.connect() as conn:
        rows = conn.execute(select(runs).order_by(runs.c.id)).mappings().all()
    return [
        RunRow(r["id"], r["created_at"], r["method"], r["dataset"], json.loads(r["params_json"]),
               r["precision"], r["recall"], r["f1"], r["n_plus"], r["n_images"])
        for r in rows
    ]


def read_only_sql(store_root: Path, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one statement on a read-only connection; anything that writes is refused."""
    with Store.open(store_root, read_only=True) as store:
        try:
            return store.db.read_sql(sql)
        except SQLAlchemyError as exc:
            text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            if "read-only" in text:
                raise AnnotError(f"{store_root}: annot sql is read-only; refused: {sql.strip()[:80]}") from exc
            raise AnnotError(f"{store_root}: SQL error: {text}") from exc


def compare_runs(store: Store, run_a: int, run_b: int) -> list[WordChange]:
    """Per-word F1 of two runs, largest change first (words missing from either run are left out)."""
    with store.db.connect() as conn:
        known = {r for (r,) in conn.execute(select(runs.c.id).where(runs.c.id.in_([run_a, run_b])))}
        for run in (run_a, run_b):
            if run not in known:
                raise AnnotError(f"{store.root}: no run {run} (see `annot runs`)")
        rows = conn.execute(
            select(word_metrics.c.run_id, word_metrics.c.tag_id, word_metrics.c.f1, word_metrics.c.n_truth, tags.c.word)
            .join(tags, tags.c.id == word_metrics.c.tag_id)
            .where(word_metrics.c.run_id.in_([run_a, run_b]))
        ).all()
    a = {t: (f1, n, w) for run, t, f1, n, w in rows if run == run_a}
    b = {t: f1 for run, t, f1, _, _ in rows if run == run_b}
    changes = [WordChange(w, f1, b[t], n) for t, (f1, n, w) in a.items() if t in b]
    return sorted(changes, key=lambda c: (-abs(c.delta), c.word))
