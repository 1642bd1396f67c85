"""``annot.Store``: the object a program opens; its methods are what the commands and the server do (see
:mod:`annot.api`)."""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Self, TypeVar

import numpy as np
from numpy.typing import NDArray

from annot.api.reading import Reading
from annot.errors import CorpusError, StoreError
from annot.progress import NoProgress, Progress
from annot.settings import BuildSettings, ScoringSettings, SettingsError
from annot.store import Manifest, StoreDir

if TYPE_CHECKING:  # each method imports what it runs: a search by tags loads no encoder, tuner or trainer
    from annot.evaluation.evaluate import EvalResult
    from annot.evaluation.tune import TuneReport
    from annot.features.images import UnreadableImage
    from annot.indexer import GrowReport, IndexReport
    from annot.library.browse import Browser, Page
    from annot.library.collection import AnnotateReport
    from annot.library.corrections import Correction, CorrectReport
    from annot.library.export import ExportReport
    from annot.library.photoview import PhotoTag
    from annot.library.review import ReviewItem
    from annot.library.search import Found, Hit, Searcher
    from annot.library.session import CorrectionSession
    from annot.library.view import Photo, WordCount
    from annot.methods import Annotation, FitReport
    from annot.methods.cnnr.train import CNNRConfig, TrainReport
    from annot.model import StoreModel

R = TypeVar("R")
T = TypeVar("T")
CORPUS_SUFFIXES = {".jsonl", ".csv", ".json", ".ndjson"}  # a file naming images, not an image


WRITE_WAIT = 15.0  # seconds a write beside a reader (the server's) waits for a CLI writer's change to end


class Store(Reading):
    """An annot store: build it from a tagged corpus, grow it, annotate images with it, evaluate it.

    Writes take the store's writer lock (``wait``: until another writer ends, else a :class:`annot.store.StoreBusy`
    naming it); reads never wait. ``progress`` receives progress of long work (the CLI passes a rich one). The model
    is loaded once and again when a writer (this one or another process) has changed the store; with ``reload``
    false only when :meth:`load` is called (the server, between requests).
    """

    def __init__(self, root: str | Path, *, progress: Progress | None = None, wait: bool | float = False,
                 reload: bool = True) -> None:
        self.root = Path(root)
        self.reload = reload
        self.progress = progress
        self.wait = wait
        self._model: StoreModel | None = None
        self._model_version: tuple[int, ...] | None = None
        self._searcher: Searcher | None = None
        self._browsing: Browser | None = None
        self._session: CorrectionSession | None = None

    def __repr__(self) -> str:
        return f"annot.Store({str(self.root)!r})"

    # -- building and growing ----------------------------------------------------------------------------------
    def build(self, corpus: str | Path, settings: BuildSettings | None = None) -> IndexReport:
        """Import a tagged corpus (JSON Lines or CSV) as training images and fit the store's model on them."""
        from annot.indexer import build_index

        return self._changed(build_index(Path(corpus), self.root, settings, self.progress, wait=self.wait))

    def add(self, corpus: str | Path, *, strict: bool = False) -> GrowReport:
        """Add tagged images with the fitted projection (no refit); indexed images take the corpus's tags."""
        from annot.indexer import add_images

        return self._changed(add_images(Path(corpus), self.root, strict=strict, progress=self.progress, wait=self.wait))

    def remove(self, images: Sequence[str | Path]) -> GrowReport:
        """Take training images out of the index and the statistics: image files, folders of them, or corpus files
        (``.jsonl``, ``.csv``) naming them."""
        from annot.indexer import remove_images
        from annot.indexer.corpus import read_corpus
        from annot.library.query import expand_inputs

        paths: list[Path] = []
        for item in map(Path, images):
            if item.suffix.lower() in CORPUS_SUFFIXES:
                paths.extend(e.path for e in read_corpus(item).entries)
            else:
                paths.extend(expand_inputs([item]))
        return self._changed(remove_images([str(Path(p).resolve()) for p in paths], self.root, self.progress,
                                           wait=self.wait))

    def refit(self) -> GrowReport:
        """Re-estimate the projection from the store's statistics and rebuild its indexes."""
        from annot.indexer import refit

        return self._changed(refit(self.root, self.progress, wait=self.wait))

    def fit(self, method: str) -> FitReport:
        """Fit a baseline (``tagprop``, ``2pknn-ml``, ...) on the training images and keep it in the store."""
        from annot.methods import method_class
        from annot.model import StoreModel

        model = StoreModel(StoreDir.open(self.root, write=True, wait=self.wait))
        try:
            return self._changed(method_class(method).fit(model, self.progress or NoProgress()))
        finally:
            model.close()

    def train_cnnr(self, config: CNNRConfig | None = None) -> TrainReport:
        """Train CNN-R (§3.5) on the training images: a network regressing each image's mean tag vector."""
        from annot.methods.cnnr.train import CNNRConfig, train_cnnr

        return self._changed(train_cnnr(self.root, config or CNNRConfig(), self.progress, wait=self.wait))

    def tune(self, *, grid: str = "quick", folds: int = 5, design: str = "random", holdout: float = 0.1,
             min_f1: float | None = None) -> TuneReport:
        """Choose settings by cross-validation on the training images and rebuild the store with the best."""
        from annot.evaluation.tune import tune_store

        return self._changed(tune_store(self.root, grid_name=grid, folds=folds, design=design, holdout=holdout,
                                        min_f1=min_f1, progress=self.progress, wait=self.wait))

    # -- using it ----------------------------------------------------------------------------------------------
    @property
    def manifest(self) -> Manifest:
        """The manifest of the loaded model (loaded again first when a writer has changed the store)."""
        return self.model().manifest

    @property
    def settings(self) -> BuildSettings:
        """The settings of the loaded model."""
        return self.model().settings

    def scoring(self, scoring: ScoringSettings | None = None, **changes: Any) -> ScoringSettings:
        """The store's scoring settings (or ``scoring``) with ``changes`` (``k=8, n_tags=3``), checked."""
        return (scoring or self.settings.scoring).replace(**{k: v for k, v in changes.items() if v is not None})

    def _version(self) -> tuple[int, ...]:
        try:  # a writer switches the manifest with every change, the database's included
            manifest = (self.root / "manifest.json").stat()
        except OSError as exc:
            raise StoreError(f"{self.root}: no such store (run `annot index` first)") from exc
        return manifest.st_mtime_ns, manifest.st_ino

    def stale(self) -> bool:
        """Whether a writer changed the store since its model was loaded."""
        return self._model is None or self._version() != self._model_version

    def load(self) -> StoreModel:
        """Load the model again if a writer changed the store (what :meth:`model` does by itself with ``reload``;
        the server calls this between requests instead)."""
        if self.stale():
            self._model_version = None
            self._drop_model()
            reload, self.reload = self.reload, True
            try:
                return self.model()
            finally:
                self.reload = reload
        assert self._model is not None
        return self._model

    def model(self) -> StoreModel:
        """The store's loaded model, loaded again when a writer has switched the store to a new one."""
        from annot.model import StoreModel

        if self._model is not None and not self.reload:
            return self._model
        version = self._version()
        if self._model is None or version != self._model_version:
            self._drop_model()
            self._model = StoreModel.open(self.root)
            self._model_version = version
        return self._model

    def _drop_model(self) -> None:
        """Close the loaded model before another is opened. DuckDB keeps one database instance per path per process
        while any connection to it lives, and hands it to the next open of that path: a connection still held by
        garbage (a finished request's frames) would give the new model the old database, so it is collected too."""
        if self._model is None:
            return
        self._model.close()
        self._model = None
        self._searcher = None  # it holds the old model
        self._browsing = None
        gc.collect()

    def query(self, images: Sequence[str | Path], scoring: ScoringSettings | None = None, *, explain: bool = False,
              open_vocabulary: bool = False, **changes: Any) -> list[Annotation]:
        """Tags for image files (or folders of them), best first, nothing kept; ``changes`` override the store's
        scoring settings. A file that cannot be read is an error naming it (``annotate_files`` returns them)."""
        from annot.library.query import annotate_files

        result = annotate_files(self.model(), [Path(p) for p in images], self.scoring(scoring, **changes),
                                explain=explain, open_vocabulary=open_vocabulary, progress=self.progress)
        if result.failed:
            path, why = next(iter(result.failed.items()))
            raise CorpusError(f"{path}: {why}")
        return result.annotations

    def iter_query(self, images: Sequence[str | Path], scoring: ScoringSettings | None = None, *,
                   explain: bool = False, open_vocabulary: bool = False, batch_size: int = 32, **changes: Any,
                   ) -> Iterator[tuple[list[Annotation], dict[str, str]]]:
        """:meth:`query` a batch at a time: each batch's annotations and its unreadable files (path: why), so a
        caller can show results as they come."""
        from annot.library.query import expand_inputs, iter_annotations

        model = self.model()
        yield from iter_annotations(model, expand_inputs([Path(p) for p in images]), self.scoring(scoring, **changes),
                                    explain=explain, open_vocabulary=open_vocabulary, batch_size=batch_size,
                                    progress=self.progress)

    @contextmanager
    def writer(self) -> Iterator[Store]:
        """A store object for one write beside this one, whose model keeps serving reads meanwhile (the server's
        corrections and kept uploads): it loads no model unless the write needs one, and is closed after it."""
        self.publish_corrections()  # the write sees them (a re-scoring learns from them) and need not wait for them
        writing = Store(self.root, progress=self.progress, wait=self.wait or WRITE_WAIT)
        try:
            yield writing
        finally:
            writing.close()

    def query_uploads(self, uploads: Sequence[tuple[str, bytes]], scoring: ScoringSettings | None = None, *,
                      explain: bool = False, max_pixels: int | None = None) -> list[Annotation | UnreadableImage]:
        """Tags for uploaded images (name, bytes), encoded in one batch; an unreadable one is its reason."""
        from annot.library.query import annotate_uploads

        return annotate_uploads(self.model(), uploads, scoring or self.settings.scoring, explain=explain,
                                max_pixels=max_pixels)

    # -- the photo library ---------------------------------------------------------------------------------------
    def annotate(self, paths: Sequence[str | Path] = (), scoring: ScoringSettings | None = None, *,
                 ray: str | None = None, batch_size: int | None = None, retag: bool = False,
                 features: Mapping[Path, NDArray[np.floating]] | None = None, rescore_limit: int | None = None,
                 **changes: Any) -> AnnotateReport:
        """Annotate photos (files, folders, or files listing paths) into the store's library: new and changed ones;
        unchanged ones are skipped, vanished ones marked missing, moved ones followed, duplicates linked, unreadable
        ones listed; photos the model changed for since (or with ``retag`` all) are re-scored from their features.
        ``features``: photos' image features already computed with the store's encoder (a kept upload's);
        ``rescore_limit``: re-score at most this many (the report's ``stale_left`` says how many wait)."""
        from annot.library.collection import annotate_photos

        scoring = self.scoring(scoring, **changes) if scoring is not None or changes else None
        return self._changed(annotate_photos(self.root, [Path(p).expanduser() for p in paths], scoring=scoring,
                                             batch_size=batch_size, progress=self.progress, wait=self.wait, ray=ray,
                                             retag=retag, features=features, take_turns=not features,
                                             rescore=not features, rescore_limit=rescore_limit))

    def search(self, words: Sequence[str] = (), *, like: str | Path | bytes | None = None, mode: str = "combined",
               require: Sequence[str] = (), exclude: Sequence[str] = (), folder: str | Path | None = None,
               n: int = 20, scope: str = "auto", max_pixels: int | None = None, all_results: bool = False,
               ) -> list[Hit]:
        """Photos by words, by an example photo (``like``: a file or an upload's bytes), or both: the library's
        (``scope`` ``auto``: when it has any, else the training images; ``library``, ``training`` or ``all``)."""
        return self.find(words, like=like, mode=mode, require=require, exclude=exclude, folder=folder, n=n,
                         scope=scope, max_pixels=max_pixels, all_results=all_results).hits

    def find(self, words: Sequence[str] = (), *, like: str | Path | bytes | None = None, mode: str = "combined",
             require: Sequence[str] = (), exclude: Sequence[str] = (), folder: str | Path | None = None,
             n: int = 20, scope: str = "auto", max_pixels: int | None = None, all_results: bool = False) -> Found:
        """:meth:`search`, with what the search covered and whether no photo had every word (``Found``)."""
        example = like if isinstance(like, bytes) or like is None else Path(like)
        found = self._search().find(words, example, mode=mode, require=require, exclude=exclude,
                                    folder=Path(folder) if folder is not None else None, n=n, scope=scope,
                                    max_pixels=max_pixels, all_results=all_results)
        return replace(found, hits=self._overlaid(found.hits, "image_id"))

    def search_scope(self, scope: str = "auto") -> str:
        """The photos a search with ``scope`` covers: ``library``, ``training`` or ``all``."""
        return self._search().scope(scope)

    def _search(self) -> Searcher:
        """The searcher over the loaded model (made again when the model is loaded again)."""
        from annot.library.search import Searcher

        model = self.model()
        if self._searcher is None or self._searcher.model is not model:
            self._searcher = Searcher(model)
        return self._searcher

    def browse(self, *, folder: str | None = None, date: str | None = None, tag: str | None = None,
               unreviewed: bool = False, order: str = "newest", offset: int = 0, limit: int = 60) -> Page:
        """The library's photos page by page, narrowed and ordered (:mod:`annot.library.browse`)."""
        page = self._browser().page(folder=folder, date=date, tag=tag, unreviewed=unreviewed, order=order,
                                    offset=offset, limit=limit)
        return replace(page, photos=self._overlaid(page.photos, "id", reviewed=True))

    def facets(self) -> dict[str, Any]:
        """The library's photos counted by folder, month and tag, and those not reviewed yet."""
        return self._browser().facets()

    def _browser(self) -> Browser:
        from annot.library.browse import Browser

        searcher = self._search()
        if self._browsing is None or self._browsing.searcher is not searcher:
            self._browsing = Browser(searcher)
        return self._browsing

    def photo_file(self, image_id: int) -> Path:
        """The file of a photo (or training image) by its id."""
        from annot.library.view import photo_record

        return Path(photo_record(self.model(), image_id).path)

    def photo_with_content(self, sha256: str) -> tuple[int, str] | None:
        """The library photo whose file's bytes have this SHA-256 (its id and path), or None."""
        from annot.library.view import find_content

        return find_content(self.model(), sha256)

    def photo_id(self, path: str | Path) -> int:
        """The id of the photo (or training image) at ``path``."""
        from annot.library.view import find_photo

        return find_photo(self.model(), Path(path))

    def photo(self, image_id: int) -> Photo:
        """One photo by its id: path, size, whether a library photo or a training image, and its tags as shown."""
        from annot.library.view import photo_record

        photo = photo_record(self.model(), image_id)
        return self._overlaid([photo], "id")[0]

    def photo_tags(self, image_ids: Sequence[int]) -> dict[int, list[PhotoTag]]:
        """The tags shown for each of these photos (one look-up for all): corrections applied, surest first."""
        from annot.library.view import photo_tags

        if self._session is not None:
            return self._session.photo_tags(image_ids)
        if self._model is not None:
            return photo_tags(self.model().store, [int(i) for i in image_ids])
        with StoreDir.open(self.root) as store:  # a writer's Store (the server's): no model needed
            return photo_tags(store, [int(i) for i in image_ids])

    def thumbnail(self, image_id: int, size: int = 256) -> bytes:
        """A JPEG thumbnail of a photo (by id: a training image or a library photo), turned upright."""
        from annot.features.images import thumbnail_jpeg
        from annot.library.view import photo_record

        model = self.model()
        path = photo_record(model, image_id).path
        data = thumbnail_jpeg(path, size, model.upright)
        if data is None:
            raise CorpusError(f"photo id {image_id}: its file {path} cannot be read")
        return data

    def vocabulary(self) -> list[WordCount]:
        """The vocabulary: each word with its training images and the library photos predicted to show it."""
        from annot.library.view import vocabulary_counts

        return vocabulary_counts(self.model())

    def review(self, n: int = 20, *, order: str = "dense") -> list[ReviewItem]:
        """The library photos to review first, by how unsure their tags are (:mod:`annot.library.review`); answer
        them with :meth:`correct`."""
        from annot.library.review import review_queue

        if n < 1:
            raise SettingsError("review.n", f"must be at least 1, got {n}")
        shown = self._session.shown() if self._session is not None else {}
        return [item for item in review_queue(self.model(), n + len(shown), order=order)
                if item.id not in shown][:n]  # a photo corrected a moment ago is reviewed

    def export(self, fmt: str = "xmp", *, out: str | Path | None = None, naming: str = "full",
               min_confidence: float | str | None = "default", training: bool = False,
               stream: IO[str] | None = None, parent: str | None = None, sync: bool = True) -> ExportReport:
        """Write the library's tags as XMP sidecars (merged into existing ones), CSV or JSON Lines. XMP: first, with
        ``sync``, what the person did to annot's keywords in their sidecars is recorded as corrections
        (:mod:`annot.library.sync`); annot's hierarchical keywords go under ``parent`` (None: ``annot``); by default only the tags
        that reach the store's calibrated cut are written (``min_confidence="default"``; None: every tag)."""
        from annot.library.export import PARENT, export
        from annot.library.sync import SidecarChanges, sidecar_changes

        parent = PARENT if parent is None else parent
        target = Path(out) if out is not None else None
        changes = SidecarChanges()
        if fmt == "xmp" and sync:
            model = self.model()
            changes = sidecar_changes(model, naming=naming, out=target, parent=parent,
                                      hierarchy=model.settings.text.keywords.value)
            if changes.corrections:
                self.correct(changes.corrections, source="xmp")
        model = self.model()
        if min_confidence == "default":
            min_confidence = "auto" if fmt == "xmp" and model.calibration(model.settings.scoring) is not None else None
        cut = model.confidence_cut(model.settings.scoring.replace(min_confidence=min_confidence))
        report = export(model, fmt, out=target, naming=naming, min_confidence=cut, training=training, stream=stream,
                        parent=parent)
        report.synced = changes.to_dict()
        return report

    def correct(self, corrections: Iterable[Correction], *, source: str = "api") -> CorrectReport:
        """Confirm, reject or add tags of photos; corrected photos join the training corpus with their vouched tags.
        With :meth:`keep_corrections_open`: written at once, published with the burst they belong to."""
        from annot.library.corrections import record_corrections

        if self._session is not None:
            return self._session.correct(list(corrections), source=source)
        return self._changed(record_corrections(self.root, corrections, source=source, wait=self.wait,
                                                progress=self.progress))

    def evaluate(self, corpus: str | Path, scoring: ScoringSettings | None = None, *, split: str = "test",
                 record: bool = True, **changes: Any) -> EvalResult:
        """Annotate a labelled corpus and score it per word (P / R / F1 / N+), recorded as a run."""
        from annot.evaluation.evaluate import evaluate

        return self._changed(evaluate(self.root, Path(corpus), scoring=self.scoring(scoring, **changes), split=split,
                                      record=record, progress=self.progress, wait=self.wait))

    def close(self) -> None:
        """Publish corrections kept open, close the loaded model."""
        if self._session is not None:
            session, self._session = self._session, None
            session.close()
        if self._model is not None:
            self._model.close()
            self._model = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def keep_corrections_open(self, *, linger: float | None = None, longest: float | None = None) -> None:
        """Write corrections by a writer kept open while they come, published a moment after the last
        (:mod:`annot.library.session`: the server's review loop); first, what a killed one left is published.
        Reads of this object show the corrected photos' tags at once; other processes when published."""
        from annot.library import session

        if self._session is None:
            self._session = session.CorrectionSession(
                self.root, wait=self.wait or WRITE_WAIT, linger=session.LINGER if linger is None else linger,
                longest=session.LONGEST if longest is None else longest)
            self._session.catch_up()

    def publish_corrections(self) -> None:
        """Publish the corrections kept open now (:meth:`keep_corrections_open`); nothing without them."""
        if self._session is not None:
            self._session.flush()

    @property
    def corrections_session(self) -> CorrectionSession | None:
        """The writer kept open for corrections (:meth:`keep_corrections_open`), if any."""
        return self._session

    def _overlaid(self, items: list[T], key: str, **also: Any) -> list[T]:
        """Items (photos, hits) with the tags of corrections not yet published, where the session has them."""
        shown = self._session.shown() if self._session is not None else {}
        if not shown:
            return items
        return [replace(item, tags=tuple(shown[i]), **also) if (i := getattr(item, key)) in shown else item  # type: ignore[type-var]
                for item in items]

    def _changed(self, result: R) -> R:
        self._model_version = None  # reload the model on next use
        return result


def open_store(path: str | Path, *, progress: Progress | None = None, wait: bool | float = False) -> Store:
    """The store at ``path`` (it need not exist yet: :meth:`Store.build` creates it)."""
    return Store(path, progress=progress, wait=wait)
