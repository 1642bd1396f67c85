"""What a store holds, read from its directory without its loaded model: ``annot info``, the evaluation runs and
their words, a run's report, and read-only SQL (:class:`Reading`, which :class:`annot.Store` has)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from annot.errors import AnnotError
from annot.store import StoreDir, atomic_write

if TYPE_CHECKING:
    from annot.evaluation.runs import RunRow, WordChange, WordMetrics


@dataclass(frozen=True)
class StoreInfo:
    """What a store holds (``annot info``): where, how big, its settings, model, index and counts."""

    store: str
    format_version: int
    size_bytes: int
    updated_at: str
    settings: dict[str, Any]
    encoder: dict[str, Any]
    words: dict[str, Any]
    canonical_correlations_top5: list[float]
    n_components: int
    index: dict[str, Any]
    vocabulary_size: int
    words_added_by_corrections: list[str]  # not yet in the projection (annot refit fits them)
    missing_word_vectors: list[str]
    counts: dict[str, int]
    library: dict[str, int]
    cnnr: dict[str, Any] | None
    fitted_methods: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


class Reading:
    """The methods of :class:`annot.Store` that read what the store holds from its directory, each opening it."""

    root: Path

    def close(self) -> None:
        """Close what is open (:class:`annot.Store` closes its model)."""

    def info(self) -> StoreInfo:
        """What the store holds: its settings, model, index and counts."""
        from annot.library.view import library_counts
        from annot.schema.queries import count_rows

        with StoreDir.open(self.root) as store:
            m = store.manifest()
            counts = count_rows(store.db)
            library = library_counts(store)
            size = sum(f.stat().st_size for f in store.root.rglob("*") if f.is_file())
        data = m.to_json()
        return StoreInfo(
            store=str(self.root), format_version=m.format_version, size_bytes=size, updated_at=m.updated_at,
            settings=data["settings"], encoder=data["encoder"], words=data["words"],
            canonical_correlations_top5=[float(c) for c in m.projection.canonical_correlations[:5]],
            n_components=m.projection.n_components,
            index={"factory": m.index.factory, "ntotal": m.index.ntotal, "search": dict(m.index.search),
                   **dict(m.index.tuning)},
            vocabulary_size=len(m.vocabulary.words), words_added_by_corrections=list(m.vocabulary.grown),
            missing_word_vectors=list(m.vocabulary.missing_word_vectors),
            counts=counts, library=library, cnnr=None if m.cnnr is None else dict(m.cnnr.info),
            fitted_methods={name: {"fit_seconds": r.fit_seconds, "fitted_at": r.fitted_at, **dict(r.params)}
                            for name, r in m.methods.items()})

    def report(self, run_id: int, out: str | Path, gallery: int = 40) -> int:
        """Write one self-contained HTML page for a run (summary, per-word charts, an image gallery); its size."""
        from annot.evaluation.report import build_report

        page = build_report(self.root, run_id, gallery).encode()
        try:
            atomic_write(Path(out), lambda fh: fh.write(page))
        except OSError as exc:
            raise AnnotError(f"{out}: cannot write the report ({exc.strerror or exc})") from exc
        return len(page)

    def runs(self) -> list[RunRow]:
        from annot.evaluation.runs import list_runs

        with StoreDir.open(self.root) as store:
            return list_runs(store)

    def run_words(self, run_id: int) -> list[WordMetrics]:
        """A run's per-word P / R / F1, most frequent training word first."""
        from annot.evaluation.runs import run_words

        with StoreDir.open(self.root) as store:
            return run_words(store, run_id)

    def compare(self, run_a: int, run_b: int) -> list[WordChange]:
        from annot.evaluation.runs import compare_runs

        with StoreDir.open(self.root) as store:
            return compare_runs(store, run_a, run_b)

    def sql(self, statement: str, timeout: float | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one read-only statement against the store's tables (sandboxed: no other file can be touched)."""
        from annot.store.sql import read_only_sql

        self.close()  # DuckDB opens a file once per process: the sandboxed connection cannot share the model's
        return read_only_sql(self.root, statement, timeout)


__all__ = ["Reading", "StoreInfo"]
