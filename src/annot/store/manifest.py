"""The manifest: what a store holds, typed. Format version 2; stores of version 1 are read through ``migrate_v1``.

``manifest.json`` names every file of the store's model (with its size and checksum, :class:`StoredFile`), records
the settings the store was built with (:class:`annot.settings.BuildSettings`) and what fitting found (canonical
correlations, counts, the index's tuning). It is written last and atomically by one writer
(:meth:`annot.store.StoreDir.write_manifest`), so it always describes a whole store. Records are frozen: a change is a
new manifest made with ``dataclasses.replace``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from annot.errors import StoreError
from annot.settings import BuildSettings, SettingsError
from annot.store.dbfiles import DatabaseRecord
from annot.store.files import StoredFile
from annot.store.migrate import migrate_v1

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class EncoderRecord:
    """The encoder as built: ``key`` names its feature cache; ``orientation`` is how images were turned upright
    before decoding (``exif``: by their EXIF orientation; ``none``: as stored, as version-1 stores did)."""

    name: str
    key: str
    dim: int
    weights: str | None = None
    orientation: str = "exif"


@dataclass(frozen=True)
class WordsRecord:
    source: str
    dim: int


@dataclass(frozen=True)
class ProjectionRecord:
    """The fitted projection (``file``) and, for linear CCA, its sufficient statistics (``statistics``), which let a
    store grow and refit without a full pass; ``pending``: the training images whose tags corrections changed since the
    statistics were written (each with its tags before and after), added into them by the next writer that needs them
    (a correction writes this small file, not the statistics)."""

    file: StoredFile
    n_components: int
    canonical_correlations: tuple[float, ...]
    statistics: StoredFile | None = None
    pending: StoredFile | None = None


@dataclass(frozen=True)
class IndexRecord:
    """The image index, its ids and (format 2) the indexed images' tags as they were indexed (``labels``: what the
    statistics and the votes hold). ``tuning`` is what choosing an approximate index's search setting measured."""

    file: StoredFile
    ids: StoredFile
    factory: str
    ntotal: int
    labels: StoredFile | None = None
    search: Mapping[str, int] = field(default_factory=dict)
    tuning: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WordIndexRecord:
    file: StoredFile
    ntotal: int


@dataclass(frozen=True)
class VocabularyRecord:
    """The store's words in the order of its label columns. ``fitted``: how many of the first words the projection
    was fitted with (None: all); the words after them were added by corrections (``annot correct --add``) and vote
    through the indexed images' tags until ``annot refit`` (or a rebuild by ``annot tune``) fits them into the
    projection."""

    words: tuple[str, ...]
    tag_ids: tuple[int, ...]
    missing_word_vectors: tuple[str, ...] = ()
    fitted: int | None = None

    @property
    def n_fitted(self) -> int:
        return len(self.words) if self.fitted is None else self.fitted

    @property
    def grown(self) -> tuple[str, ...]:
        """The words added by corrections since the projection was fitted."""
        return self.words[self.n_fitted :]


@dataclass(frozen=True)
class Counts:
    train_images: int
    unreadable: int = 0
    untagged: int = 0


@dataclass(frozen=True)
class StandardsRecord:
    """Each word's saved standards (``--score standardized``) and the settings they hold for (``key``)."""

    file: StoredFile
    key: str


@dataclass(frozen=True)
class MethodRecord:
    """A fitted annotation method (a baseline): its arrays, settings, and the training images it was fitted on."""

    file: StoredFile
    params: Mapping[str, Any]
    training: str
    fit_seconds: float = 0.0
    fitted_at: str = ""


@dataclass(frozen=True)
class CNNRRecord:
    """A trained CNN-R: its model file and what training recorded (backbone, epochs, validation numbers)."""

    file: StoredFile
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CalibrationRecord:
    """The confidence calibration (``annot.fitting.calibration``), the scoring it holds for, and what it measured on
    held-out training images."""

    file: StoredFile
    key: str
    measured: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CollectionRecord:
    """The photo library's vectors in the shared space: a FAISS index whose ids are the photos' image ids."""

    file: StoredFile
    ids: StoredFile
    ntotal: int
    factory: str = "Flat"
    projection: str | None = None  # the projection file its vectors were made with (None: not recorded)
    tuning: Mapping[str, Any] = field(default_factory=dict)  # its search setting and what choosing it measured
    layers: tuple[StoredFile, ...] = ()  # later commits' changes above the index (see annot.library.vectors)


@dataclass(frozen=True)
class Manifest:
    settings: BuildSettings
    encoder: EncoderRecord
    words: WordsRecord
    projection: ProjectionRecord
    index: IndexRecord
    word_index: WordIndexRecord
    vocabulary: VocabularyRecord
    counts: Counts
    updated_at: str = field(default_factory=now)
    standards: StandardsRecord | None = None
    methods: Mapping[str, MethodRecord] = field(default_factory=dict)
    cnnr: CNNRRecord | None = None
    calibration: CalibrationRecord | None = None
    collection: CollectionRecord | None = None
    database: DatabaseRecord | None = None  # None: a store written before layers (its database is annot.duckdb)
    format_version: int = FORMAT_VERSION

    def files(self) -> Iterator[tuple[str, StoredFile]]:
        """Every file the manifest names, with what it is."""
        yield "projection", self.projection.file
        if self.projection.statistics is not None:
            yield "statistics", self.projection.statistics
        if self.projection.pending is not None:
            yield "pending statistics", self.projection.pending
        yield "image index", self.index.file
        yield "image ids", self.index.ids
        if self.index.labels is not None:
            yield "indexed tags", self.index.labels
        yield "word index", self.word_index.file
        if self.standards is not None:
            yield "word standards", self.standards.file
        for name, method in self.methods.items():
            yield f"{name} parameters", method.file
        if self.cnnr is not None:
            yield "CNN-R model", self.cnnr.file
        if self.calibration is not None:
            yield "confidence calibration", self.calibration.file
        if self.collection is not None:
            yield "photo library index", self.collection.file
            yield "photo library ids", self.collection.ids
            for layer in self.collection.layers:
                yield "photo library layer", layer
        if self.database is not None:
            for n, file in enumerate(self.database.files()):
                yield "database" if n == 0 and self.database.base is not None else "database segment", file
            for file in self.database.view or ():
                yield "photo view", file

    def touched(self, **changes: Any) -> Manifest:
        """A copy with ``changes`` and a new ``updated_at``."""
        return replace(self, updated_at=now(), **changes)

    # -- JSON -------------------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        def ref(f: StoredFile | None) -> dict[str, Any] | None:
            return None if f is None else f.to_dict()

        p, i = self.projection, self.index
        return {
            "format_version": FORMAT_VERSION,
            "updated_at": self.updated_at,
            "settings": self.settings.to_dict(),
            "encoder": vars(self.encoder).copy(),
            "words": vars(self.words).copy(),
            "projection": {"file": ref(p.file), "statistics": ref(p.statistics), "pending": ref(p.pending),
                           "n_components": p.n_components, "canonical_correlations": list(p.canonical_correlations)},
            "index": {"file": ref(i.file), "ids": ref(i.ids), "labels": ref(i.labels), "factory": i.factory,
                      "ntotal": i.ntotal, "search": dict(i.search), "tuning": dict(i.tuning)},
            "word_index": {"file": ref(self.word_index.file), "ntotal": self.word_index.ntotal},
            "vocabulary": {"words": list(self.vocabulary.words), "tag_ids": list(self.vocabulary.tag_ids),
                           "missing_word_vectors": list(self.vocabulary.missing_word_vectors),
                           **({} if self.vocabulary.fitted is None else {"fitted": self.vocabulary.fitted})},
            "counts": vars(self.counts).copy(),
            "standards": None if self.standards is None else {"file": ref(self.standards.file), "key": self.standards.key},
            "methods": {name: {"file": ref(m.file), "params": dict(m.params), "training": m.training,
                               "fit_seconds": m.fit_seconds, "fitted_at": m.fitted_at}
                        for name, m in self.methods.items()},
            "cnnr": None if self.cnnr is None else {"file": ref(self.cnnr.file), "info": dict(self.cnnr.info)},
            "calibration": None if self.calibration is None else {
                "file": ref(self.calibration.file), "key": self.calibration.key,
                "measured": dict(self.calibration.measured)},
            "collection": None if self.collection is None else {
                "file": ref(self.collection.file), "ids": ref(self.collection.ids), "ntotal": self.collection.ntotal,
                "factory": self.collection.factory,
                **({} if self.collection.projection is None else {"projection": self.collection.projection}),
                **({"tuning": dict(self.collection.tuning)} if self.collection.tuning else {}),
                **({"layers": [ref(f) for f in self.collection.layers]} if self.collection.layers else {})},
            **({} if self.database is None else {"database": self.database.to_dict()}),
        }

    @classmethod
    def from_json(cls, data: Any, source: Path) -> Manifest:
        """Read a manifest of any readable version; a clear error naming the file and the problem otherwise."""
        if not isinstance(data, dict):
            raise StoreError(f"{source}: not a manifest (a JSON object was expected, got {type(data).__name__})")
        version = data.get("format_version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise StoreError(f"{source}: store format version {version!r} is not a whole number; "
                             f"this annot reads versions {' and '.join(map(str, READABLE_VERSIONS))}")
        if version not in READABLE_VERSIONS:
            raise StoreError(f"{source}: store format version {version}; this annot reads versions "
                             f"{' and '.join(map(str, READABLE_VERSIONS))}")
        try:
            if version == 1:
                data = migrate_v1(data, source)
            return _read_v2(data)
        except SettingsError as exc:
            raise StoreError(f"{source}: setting {exc}") from exc
        except KeyError as exc:
            raise StoreError(f"{source}: incomplete manifest (no {exc.args[0]!r})") from exc
        except (TypeError, ValueError, AttributeError) as exc:
            raise StoreError(f"{source}: damaged manifest ({exc})") from exc


def _file(data: Mapping[str, Any] | None) -> StoredFile | None:
    return None if data is None else StoredFile.from_dict(data)


def _need(data: Mapping[str, Any] | None, key: str) -> StoredFile:
    if data is None:
        raise KeyError(key)
    return StoredFile.from_dict(data)


def _read_v2(d: dict[str, Any]) -> Manifest:
    p, i, v = d["projection"], d["index"], d["vocabulary"]
    methods = {name: MethodRecord(_need(m["file"], f"methods.{name}.file"), dict(m["params"]), str(m["training"]),
                                  float(m.get("fit_seconds", 0.0)), str(m.get("fitted_at", "")))
               for name, m in (d.get("methods") or {}).items()}
    tag_ids = tuple(int(t) for t in v["tag_ids"])
    words = tuple(str(w) for w in v["words"])
    if len(tag_ids) != len(words):
        raise ValueError(f"vocabulary has {len(words)} words but {len(tag_ids)} tag ids")
    if v.get("fitted") is not None and not 0 < int(v["fitted"]) <= len(words):
        raise ValueError(f"vocabulary.fitted is {v['fitted']}, the vocabulary has {len(words)} words")
    return Manifest(
        settings=BuildSettings.from_dict(d["settings"]),
        encoder=EncoderRecord(**d["encoder"]),
        words=WordsRecord(str(d["words"]["source"]), int(d["words"]["dim"])),
        projection=ProjectionRecord(_need(p["file"], "projection.file"), int(p["n_components"]),
                                    tuple(float(c) for c in p["canonical_correlations"]), _file(p.get("statistics")),
                                    _file(p.get("pending"))),
        index=IndexRecord(_need(i["file"], "index.file"), _need(i["ids"], "index.ids"), str(i["factory"]),
                          int(i["ntotal"]), _file(i.get("labels")), dict(i.get("search") or {}),
                          dict(i.get("tuning") or {})),
        word_index=WordIndexRecord(_need(d["word_index"]["file"], "word_index.file"), int(d["word_index"]["ntotal"])),
        vocabulary=VocabularyRecord(words, tag_ids, tuple(v.get("missing_word_vectors") or ()),
                                    None if v.get("fitted") is None else int(v["fitted"])),
        counts=Counts(**d["counts"]),
        updated_at=str(d.get("updated_at", "")),
        standards=None if not d.get("standards") else StandardsRecord(_need(d["standards"]["file"], "standards.file"),
                                                                        str(d["standards"]["key"])),
        methods=methods,
        cnnr=None if not d.get("cnnr") else CNNRRecord(_need(d["cnnr"]["file"], "cnnr.file"), dict(d["cnnr"].get("info") or {})),
        calibration=None if not d.get("calibration") else CalibrationRecord(
            _need(d["calibration"]["file"], "calibration.file"), str(d["calibration"]["key"]),
            dict(d["calibration"].get("measured") or {})),
        collection=None if not d.get("collection") else CollectionRecord(
            _need(d["collection"]["file"], "collection.file"), _need(d["collection"]["ids"], "collection.ids"),
            int(d["collection"]["ntotal"]), str(d["collection"].get("factory", "Flat")),
            d["collection"].get("projection"), dict(d["collection"].get("tuning") or {}),
            tuple(StoredFile.from_dict(f) for f in d["collection"].get("layers") or ())),
        database=None if not d.get("database") else DatabaseRecord.from_dict(d["database"]),
        format_version=int(d.get("format_version", FORMAT_VERSION)),
    )


def dumps(manifest: Manifest) -> bytes:
    return json.dumps(manifest.to_json(), indent=2, sort_keys=True).encode()


__all__ = [
    "FORMAT_VERSION",
    "CNNRRecord",
    "CalibrationRecord",
    "CollectionRecord",
    "Counts",
    "EncoderRecord",
    "IndexRecord",
    "Manifest",
    "MethodRecord",
    "ProjectionRecord",
    "StandardsRecord",
    "VocabularyRecord",
    "WordIndexRecord",
    "WordsRecord",
    "dumps",
]
