"""The public Python API: one object you open, whose methods are what the commands do.

```python
import annot

store = annot.open_store("corel5k.annot")
store.build("train.jsonl", annot.BuildSettings(text=annot.TextSettings(vocabulary=Path("vocabulary.txt"))))
for a in store.annotate(["photo.jpg"]):
    print(a.image, [(t.tag, round(t.score, 3)) for t in a.tags])
print(store.evaluate("test.jsonl").summary.f1)
```

The command line (``annot.cli``) and the server (``annot.serve``) call these same methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from annot.errors import CorpusError, StoreError
from annot.evaluation.evaluate import EvalResult, evaluate
from annot.evaluation.runs import RunRow, WordChange, compare_runs, list_runs, read_only_sql
from annot.evaluation.tune import TuneReport, tune_store
from annot.indexer import GrowReport, IndexReport, add_images, build_index, refit, remove_images
from annot.library.query import annotate_files
from annot.methods import Annotation, FitReport, StoreModel, method_class
from annot.methods.cnnr.train import CNNRConfig, TrainReport, train_cnnr
from annot.progress import NoProgress, Progress
from annot.schema.queries import count_rows
from annot.settings import BuildSettings, ScoringSettings
from annot.store import Manifest, StoreDir


class Store:
    """An annot store: build it from a tagged corpus, grow it, annotate images with it, evaluate it.

    Writes take the store's writer lock (``wait``: until another writer ends, else a :class:`annot.store.StoreBusy`
    naming it); reads never wait. ``progress`` receives progress of long work (the CLI passes a rich one).
    """

    def __init__(self, root: str | Path, *, progress: Progress | None = None, wait: bool = False) -> None:
        self.root = Path(root)
        self.progress = progress
        self.wait = wait
        self._model: StoreModel | None = None
        self._model_version: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"annot.Store({str(self.root)!r})"

    # -- building and growing ----------------------------------------------------------------------------------
    def build(self, corpus: str | Path, settings: BuildSettings | None = None) -> IndexReport:
        """Import a tagged corpus (JSON Lines or CSV) as training images and fit the store's model on them."""
        return self._changed(build_index(Path(corpus), self.root, settings, self.progress, wait=self.wait))

    def add(self, corpus: str | Path, *, strict: bool = False) -> GrowReport:
        """Add tagged images with the fitted projection (no refit); indexed images take the corpus's tags."""
        return self._changed(add_images(Path(corpus), self.root, strict=strict, progress=self.progress, wait=self.wait))

    def remove(self, paths: Sequence[str | Path]) -> GrowReport:
        """Take training images (by path) out of the index and the statistics."""
        return self._changed(remove_images([str(Path(p).resolve()) for p in paths], self.root, self.progress,
                                           wait=self.wait))

    def refit(self) -> GrowReport:
        """Re-estimate the projection from the store's statistics and rebuild its indexes."""
        return self._changed(refit(self.root, self.progress, wait=self.wait))

    def fit(self, method: str) -> FitReport:
        """Fit a baseline (``tagprop``, ``2pknn-ml``, ...) on the training images and keep it in the store."""
        model = StoreModel(StoreDir.open(self.root, write=True, wait=self.wait))
        try:
            return self._changed(method_class(method).fit(model, self.progress or NoProgress()))
        finally:
            model.close()

    def train_cnnr(self, config: CNNRConfig | None = None) -> TrainReport:
        """Train CNN-R (§3.5) on the training images: a network regressing each image's mean tag vector."""
        return self._changed(train_cnnr(self.root, config or CNNRConfig(), self.progress, wait=self.wait))

    def tune(self, *, grid: str = "quick", folds: int = 5, design: str = "random", holdout: float = 0.1,
             min_f1: float | None = None) -> TuneReport:
        """Choose settings by cross-validation on the training images and rebuild the store with the best."""
        return self._changed(tune_store(self.root, grid_name=grid, folds=folds, design=design, holdout=holdout,
                                        min_f1=min_f1, progress=self.progress, wait=self.wait))

    # -- using it ----------------------------------------------------------------------------------------------
    @property
    def manifest(self) -> Manifest:
        """The store's manifest (read now: another process may have changed the store)."""
        with StoreDir.open(self.root) as store:
            return store.manifest()

    @property
    def settings(self) -> BuildSettings:
        return self.manifest.settings

    def scoring(self, scoring: ScoringSettings | None = None, **changes: Any) -> ScoringSettings:
        """The store's scoring settings (or ``scoring``) with ``changes`` (``k=8, n_tags=3``), checked."""
        return (scoring or self.settings.scoring).replace(**{k: v for k, v in changes.items() if v is not None})

    def model(self) -> StoreModel:
        """The store's loaded model, loaded again when a writer has switched the store to a new one."""
        path = self.root / "manifest.json"
        try:
            stat = path.stat()
        except OSError as exc:
            raise StoreError(f"{self.root}: no such store (run `annot index` first)") from exc
        version = (stat.st_mtime_ns, stat.st_ino)
        if self._model is None or version != self._model_version:
            if self._model is not None:
                self._model.close()
            self._model = StoreModel.open(self.root)
            self._model_version = version
        return self._model

    def annotate(self, images: Sequence[str | Path], scoring: ScoringSettings | None = None, *, explain: bool = False,
                 open_vocabulary: bool = False, **changes: Any) -> list[Annotation]:
        """Tags for image files (or folders of them), best first; ``changes`` override the store's scoring settings.
        A file that cannot be read is an error naming it (``annotate_files`` returns them instead)."""
        result = annotate_files(self.model(), [Path(p) for p in images], self.scoring(scoring, **changes),
                                explain=explain, open_vocabulary=open_vocabulary, progress=self.progress)
        if result.failed:
            path, why = next(iter(result.failed.items()))
            raise CorpusError(f"{path}: {why}")
        return result.annotations

    def evaluate(self, corpus: str | Path, scoring: ScoringSettings | None = None, *, split: str = "test",
                 record: bool = True, **changes: Any) -> EvalResult:
        """Annotate a labelled corpus and score it per word (P / R / F1 / N+), recorded as a run."""
        return self._changed(evaluate(self.root, Path(corpus), scoring=self.scoring(scoring, **changes), split=split,
                                      record=record, progress=self.progress, wait=self.wait))

    # -- reading what it holds -----------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """What the store holds: its settings, model, index and counts."""
        with StoreDir.open(self.root) as store:
            m = store.manifest()
            counts = count_rows(store.db)
            size = sum(f.stat().st_size for f in store.root.rglob("*") if f.is_file())
        data = m.to_json()
        return {"store": str(self.root), "format_version": m.format_version, "size_bytes": size,
                "updated_at": m.updated_at, "settings": data["settings"], "encoder": data["encoder"],
                "words": data["words"], "canonical_correlations_top5": list(m.projection.canonical_correlations[:5]),
                "n_components": m.projection.n_components, "index": {"factory": m.index.factory,
                                                                     "ntotal": m.index.ntotal,
                                                                     "search": dict(m.index.search),
                                                                     **dict(m.index.tuning)},
                "vocabulary_size": len(m.vocabulary.words), "missing_word_vectors": list(m.vocabulary.missing_word_vectors),
                "counts": counts, "cnnr": None if m.cnnr is None else dict(m.cnnr.info),
                "fitted_methods": {name: {"fit_seconds": r.fit_seconds, "fitted_at": r.fitted_at, **dict(r.params)}
                                   for name, r in m.methods.items()}}

    def runs(self) -> list[RunRow]:
        with StoreDir.open(self.root) as store:
            return list_runs(store)

    def compare(self, run_a: int, run_b: int) -> list[WordChange]:
        with StoreDir.open(self.root) as store:
            return compare_runs(store, run_a, run_b)

    def sql(self, statement: str, timeout: float | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one read-only statement against the store's tables (sandboxed: no other file can be touched)."""
        return read_only_sql(self.root, statement, timeout)

    def close(self) -> None:
        if self._model is not None:
            self._model.close()
            self._model = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _changed(self, result: Any) -> Any:
        self._model_version = None  # reload the model on next use
        return result


def open_store(path: str | Path, *, progress: Progress | None = None, wait: bool = False) -> Store:
    """The store at ``path`` (it need not exist yet: :meth:`Store.build` creates it)."""
    return Store(path, progress=progress, wait=wait)
