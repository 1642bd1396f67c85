"""Finding photos (``annot search``): by words or by an example photo, over the training images and the library.

Two ways, combined by default and each selectable:

- **by tags** (``tags``): photos whose tags hold the words: a library photo's predicted tags (ranked by their
  confidence; its corrections win: a rejected tag is gone, a confirmed or added one is sure), and a training image's
  own tags (sure). A word outside the vocabulary stands for its nearest vocabulary words by word vector ("kitten":
  cat), each weighted by its similarity.
- **in the shared space** (``space``): the words' text view, as an image with those tags would have it (W2V: the mean
  of their vectors; BV: their 0/1 positions, for vocabulary words), projected by the text side of the CCA (W_y) and
  compared by correlation with every photo's row in FAISS (the training images' index and the library's). A word
  outside the training vocabulary ("kitten") has no BV position and no tag, but a word vector: it finds photos
  through it.

``combined`` ranks by reciprocal-rank fusion of the two (Σ 1 / (60 + rank)), which needs no common scale between a
confidence and a correlation. ``like`` finds photos near an example photo in the shared space. Filters: tags every
result must have (``require``), tags none may have (``exclude``), a folder, which photos (``scope``: by default the
library's when it has any, else the training images; ``all`` for both), and how many (``n``).

Query words are read as a person types them: case, punctuation around a word ("Tiger,") and a plural whose singular
is a word of the store ("tigers") do not matter.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from annot.errors import AnnotError, WordVectorError
from annot.features import multilingual
from annot.features.images import TooManyPixels, UnreadableImage, decode_bytes, iter_batches, preprocess
from annot.features.text import text_view
from annot.features.words import load_word_vectors
from annot.indexer.corpus import normalize_tag
from annot.library.photoview import PhotoTag, PhotoView
from annot.library.vectors import LibraryVectors, read_library
from annot.model import StoreModel
from annot.projection import correlation_rows
from annot.retrieval.indexes import build_flat_index
from annot.schema.queries import image_paths, paths_under
from annot.settings import SettingsError, TextView

MODES = ("combined", "tags", "space")
SCOPES = ("auto", "library", "training", "all")  # auto: the library's photos when it has any, else the training images
FUSION = 60  # the k of reciprocal-rank fusion
Ranking = tuple[NDArray[np.int64], NDArray[np.float64]]  # rows of the photo view, best first, and their scores
DEPTH = 1000  # nearest photos fetched from each index before filters apply
EXPAND = 3  # a word outside the vocabulary stands for at most this many vocabulary words (by word vector) ...
SIMILAR = 0.6  # ... each at least this similar (cosine); a fixed choice, measured in benchmarks/library.py
MAX_WORDS = 32  # words in one search
REMEMBERED = 4096  # query words whose reading a searcher keeps


class UnreadableUpload(AnnotError):
    """An uploaded image that is not a readable image."""


class UploadTooLarge(AnnotError):
    """An uploaded image over the pixel limit."""


@dataclass(frozen=True)
class Found:
    """What a search found: its photos best first, the photos it covered (``library``, ``training`` or ``all``), and
    whether no photo had every word of the query (``partial``: the photos with some of them are shown)."""

    hits: list[Hit]
    scope: str
    partial: bool = False
    words: tuple[str, ...] = ()  # the query's words as read (folded, trimmed, singular)
    left_out: int = 0  # photos matched only by weaker evidence than the cut (``all_results`` shows them)
    read_as: dict[str, list[str]] = field(default_factory=dict)  # a word outside the vocabulary: the words it stood for
    unknown: tuple[str, ...] = ()  # words that stood for no vocabulary word


@dataclass(frozen=True)
class Hit:
    """A photo found: its id, path, score (higher is better), whether it is a library photo or a training image,
    what found it, and its tags."""

    image_id: int
    path: str
    score: float
    kind: str
    found_by: tuple[str, ...]
    tags: tuple[PhotoTag, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.image_id, "path": self.path, "score": round(self.score, 6), "kind": self.kind,
                "found_by": list(self.found_by), "tags": [t.to_dict() for t in self.tags]}


def _summed(found: Sequence[tuple[NDArray[np.int64], NDArray[np.float64]]], every: bool,
            ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Each word's (rows ascending, value) summed by row: over the rows every word has (``every``), or over the rows
    any word has with a missing word counting 0 (those whose sum is above 0); rows ascending."""
    if every:
        rows, total = found[0]
        for other_rows, other in found[1:]:
            rows, mine, theirs = np.intersect1d(rows, other_rows, assume_unique=True, return_indices=True)
            total = total[mine] + other[theirs]
        return rows, total
    rows, at = np.unique(np.concatenate([r for r, _ in found]), return_inverse=True)
    summed = np.bincount(at, weights=np.concatenate([v for _, v in found]), minlength=len(rows)).astype(np.float64)
    keep = summed > 0
    return rows[keep], summed[keep]


def _trim(word: str) -> str:
    """A word without the punctuation and symbols around it ("Tiger," -> "tiger"; "f-16" stays)."""
    lo, hi = 0, len(word)
    while lo < hi and (word[lo].isspace() or unicodedata.category(word[lo])[0] in "PS"):
        lo += 1
    while hi > lo and (word[hi - 1].isspace() or unicodedata.category(word[hi - 1])[0] in "PS"):
        hi -= 1
    return word[lo:hi]


def _singulars(word: str) -> list[str]:
    """What an English plural's singular may be: tigers -> tiger, beaches -> beach, berries -> berry."""
    forms = []
    if word.endswith("ies") and len(word) > 4:
        forms.append(word[:-3] + "y")
    if word.endswith("es") and len(word) > 3:
        forms.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss") and len(word) > 2:
        forms.append(word[:-1])
    return forms


class Searcher:
    """Search over a loaded store: its training images' index and its library's."""

    def __init__(self, model: StoreModel) -> None:
        self.model = model
        record = model.manifest.collection
        d = model.index.d
        self.library = read_library(model.store, record, d) if record is not None else None
        if self.library is not None and record is not None and \
                record.projection not in (None, model.manifest.projection.file.path):
            self.library = self._reprojected(self.library.ids())  # refitted since: the vectors made anew, in memory
        self._words: Any = None
        self._word_index: Any = None
        self._cut: tuple[float | None] | None = None
        self._unit: NDArray[np.float64] | None = None  # the vocabulary's unit word vectors (for expand)
        self._meanings: multilingual.Meanings | None = None  # the vocabulary in the multilingual encoder's space
        self._given: dict[str, str] = {}  # a query word as read -> as typed (trimmed, case kept: for that encoder)
        self._expanded: dict[tuple[str, str], tuple[list[tuple[int, float]], str]] = {}
        self.view = PhotoView(model)

    def _reprojected(self, ids: NDArray[np.int64]) -> LibraryVectors:
        """The library's photos with every vector made from its cached features by the current projection
        (``annot refit`` changed it, and ``annot annotate`` has not saved the new vectors yet)."""
        cache = self.model.feature_cache()
        ids = np.sort(ids[np.isin(ids, cache.cached_ids())])
        rows = [self.model.project(cache.load(ids[lo : lo + 4096])) for lo in range(0, len(ids), 4096)]
        d = self.model.index.d
        return LibraryVectors(d, build_flat_index(np.vstack(rows) if rows else np.zeros((0, d), np.float32), ids), ids)

    # -- the two ways -------------------------------------------------------------------------------------------
    def text_query(self, words: Sequence[str]) -> NDArray[np.float32]:
        """The words' row of the shared space: their text view projected by W_y (a correlation row). One word the
        projection was fitted with is its row of the store's word index (the same row, without loading the word
        vectors). A word in another language counts as the vocabulary words it was read as, by their weights."""
        model = self.model
        view = model.settings.text.view
        vocabulary = {w: i for i, w in enumerate(model.vocabulary)}
        terms: list[tuple[str, float]] = []
        for word in words:
            found, source = self.meaning(word) if word not in vocabulary else ([], "vocabulary")
            terms += [(self.view.vocabulary[j], w) for j, w in found] if source == "multilingual" else [(word, 1.0)]
        if len(terms) == 1:
            row = self._word_row(terms[0][0])
            if row is not None:
                return row
        self.word_vectors()
        labels = np.zeros((1, len(model.vocabulary)), bool)
        vectors, weights = [], []
        for word, weight in terms:
            if word in vocabulary:
                labels[0, vocabulary[word]] = True
            vector = self._words.vector(word)
            if vector is not None:
                vectors.append(np.asarray(vector, np.float32))
                weights.append(weight)
            elif word not in vocabulary or view is TextView.W2V:
                raise WordVectorError(f"{word!r}: no word vector in {model.manifest.words.source}, and not a word "
                                      "of the store's vocabulary; it cannot be searched in the shared space")
        labels = labels[:, : model.manifest.vocabulary.n_fitted]  # a word added by a correction: its vector only
        if view is TextView.BV and not labels.any():
            raise AnnotError(f"the store's text view is bv (0/1 tags): only the words it was fitted with can be "
                             f"searched in the shared space, not {', '.join(words)}")
        if not vectors and not labels.any():
            raise WordVectorError(f"{', '.join(words)}: added by corrections, without a word vector: the shared space "
                                  "knows it after annot refit; until then it is found by its tags")
        E = np.zeros((1, 1), np.float32)
        w2v = np.average(vectors, axis=0, weights=weights)[None, :].astype(np.float32) if vectors else \
            np.zeros((1, model.manifest.words.dim), np.float32)
        if view is TextView.W2V:
            Y = w2v
        elif view is TextView.BV:
            Y = text_view(labels, E, np.ones(labels.shape[1], bool), "bv")
        else:
            Y = np.hstack([w2v, labels.astype(np.float32)])
        return correlation_rows(model.projection.transform_y(Y))

    def _word_row(self, word: str) -> NDArray[np.float32] | None:
        """A fitted vocabulary word's row of the word index (Z = its one-word text view times W_y), or None."""
        model = self.model
        fitted = model.vocabulary[: model.manifest.vocabulary.n_fitted]
        if word not in fitted:
            return None
        if self._word_index is None:
            self._word_index = model.store.read_index(model.manifest.word_index.file, "word index")
        try:
            row = self._word_index.reconstruct(int(model.tag_ids[fitted.index(word)]))
        except RuntimeError:  # a word the index does not hold (W2V without a vector)
            return None
        return np.asarray(row, np.float32)[None, :]

    def image_query(self, image: Path | bytes, max_pixels: int | None = None) -> NDArray[np.float32]:
        """An example photo's row of the shared space (a file, or an upload's bytes)."""
        encoder = self.model.encoder()
        if isinstance(image, bytes):
            try:
                pixels = decode_bytes(image, encoder, self.model.upright, max_pixels)
            except TooManyPixels as exc:
                raise UploadTooLarge(f"the uploaded image: {exc}") from None
            except UnreadableImage as exc:
                raise UnreadableUpload(f"the uploaded image: {exc}") from None
            sized = preprocess(encoder, [p[None] for p in pixels])
        else:
            batch = next(iter_batches([image], encoder, 1, workers=0, upright=self.model.upright))
            if not batch.ok[0]:
                raise AnnotError(f"{image}: {batch.errors[0]}")
            sized = batch.sized
        return correlation_rows(self.model.project(encoder.encode_sized(sized)))

    def nearest(self, row: NDArray[np.float32], depth: int = DEPTH) -> Ranking:
        """(row of the view, correlation) of the photos nearest to a row of the shared space, from both indexes,
        best first, each photo once (a corrected photo is in both)."""
        found_ids, found_scores = [], []
        for index in (self.model.index, self.library):
            if index is None or index.ntotal == 0:
                continue
            similarity, ids = index.search(np.ascontiguousarray(row, np.float32), min(depth, index.ntotal))
            found_ids.append(ids[0])
            found_scores.append(similarity[0])
        if not found_ids:
            return np.zeros(0, np.int64), np.zeros(0)
        ids, scores = np.concatenate(found_ids), np.concatenate(found_scores)
        rows = self.view.rows(ids)
        keep = (ids >= 0) & (rows >= 0)
        rows, scores = rows[keep], scores[keep]
        order = np.argsort(-scores, kind="stable")
        rows, scores = rows[order], scores[order]
        _, first = np.unique(rows, return_index=True)
        first.sort()
        return rows[first], scores[first].astype(np.float64)

    def word_vectors(self) -> Any:
        if self._words is None:
            self._words = load_word_vectors(self.model.manifest.words.source)
        return self._words

    def expand(self, word: str) -> list[tuple[int, float]]:
        """The vocabulary words a query word stands for, with weights: itself (1); for a word outside the
        vocabulary its ``EXPAND`` nearest vocabulary words by word vector with cosine >= ``SIMILAR``; failing that
        (a word in another language), the nearest by the multilingual encoder where it is installed
        (:mod:`annot.features.multilingual`)."""
        return self.meaning(word)[0]

    def meaning(self, word: str) -> tuple[list[tuple[int, float]], str]:
        """:meth:`expand`'s answer and where it came from: ``vocabulary``, ``word vectors``, ``multilingual`` or
        ``""`` (nothing)."""
        key = (word, self._given.get(word, word))  # the multilingual encoder reads the word as typed
        if key not in self._expanded:
            if len(self._expanded) >= REMEMBERED:  # a server's searcher lives long: what it remembers is bounded
                self._expanded.clear()
            self._expanded[key] = self._meaning(word)
        return self._expanded[key]

    def _meaning(self, word: str) -> tuple[list[tuple[int, float]], str]:
        position = {w: j for j, w in enumerate(self.view.vocabulary)}
        if word in position:
            return [(position[word], 1.0)], "vocabulary"
        vector = self.word_vectors().vector(word)
        if vector is not None:
            if self._unit is None:
                rows = [self.word_vectors().vector(w) for w in self.view.vocabulary]
                dim = len(vector)
                E = np.array([r if r is not None else np.zeros(dim) for r in rows], np.float64)
                self._unit = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
            v = np.asarray(vector, np.float64)
            similarity = self._unit @ (v / max(float(np.linalg.norm(v)), 1e-12))
            best = np.argsort(-similarity)[:EXPAND]
            found = [(int(j), float(similarity[j])) for j in best if similarity[j] >= SIMILAR]
            if found:
                return found, "word vectors"
        if multilingual.available():
            if self._meanings is None:
                self._meanings = multilingual.Meanings(self.view.vocabulary)
            found = self._meanings.nearest(self._given.get(word, word))
            if found:
                return found, "multilingual"
        return [], ""

    def evidence_cut(self) -> float | None:
        """The confidence a predicted tag must reach to count as a photo's evidence for a word: the cut the
        confidence calibration chose on held-out training images (``--min-confidence auto``), or None without one."""
        if self._cut is None:
            model = self.model
            scoring = model.settings.scoring
            found = model.confidence_cut(scoring.replace(min_confidence="auto")) \
                if model.calibration(scoring) is not None else None
            self._cut = (found,)
        return self._cut[0]

    def by_tags(self, words: Sequence[str], every: bool = True, cut: float | None = None) -> Ranking:
        """(row of the view, mean over the words of its confidence) of the photos whose tags hold every word, best
        first; a word outside the vocabulary counts as its nearest vocabulary words (:meth:`expand`), each tag's
        confidence times its similarity. Read from the photos that show the words, not the whole view."""
        unique = list(dict.fromkeys(words))
        found: list[tuple[NDArray[np.int64], NDArray[np.float64]]] = []
        for word in unique:
            expanded = self.expand(word)
            if not expanded and every:
                return np.zeros(0, np.int64), np.zeros(0)
            parts = [self.view.with_word(position) + (weight,) for position, weight in expanded]
            if cut is not None:  # weaker evidence than the cut does not count
                parts = [(rows[c >= cut], c[c >= cut], weight) for rows, c, weight in parts]
            rows = np.concatenate([r for r, _, _ in parts] or [np.zeros(0, np.int64)])
            value = np.concatenate([weight * c.astype(np.float64) for _, c, weight in parts] or [np.zeros(0)])
            if len(parts) > 1:  # a photo showing two of the word's stand-ins counts the better one
                order = np.lexsort((-value, rows))
                rows, value = rows[order], value[order]
                first = np.concatenate([[True], rows[1:] != rows[:-1]]) if len(rows) else np.zeros(0, bool)
                rows, value = rows[first], value[first]
            found.append((rows, value))
        rows, total = _summed(found, every)
        mean = total / len(unique)
        order = np.argsort(-mean, kind="stable")
        return rows[order], mean[order]

    # -- a search ------------------------------------------------------------------------------------------------
    def scope(self, scope: str = "auto") -> str:
        """The photos a search covers: ``auto`` is the library's when it has any, else the training images."""
        if scope not in SCOPES:
            raise SettingsError("search.scope", f"must be one of {', '.join(SCOPES)}, got {scope!r}")
        if scope == "auto":
            return "library" if self.view.library.any() else "training"
        return scope

    def query_words(self, words: Sequence[str]) -> list[str]:
        """The words of a query as the store writes its tags: folded, without punctuation around them, a plural
        read as its singular where only the singular is a word of the store; each once."""
        known = set(self.model.vocabulary)
        out: list[str] = []
        for given in words:
            word = _trim(normalize_tag(given))
            if word and word not in known:
                word = next((s for s in _singulars(word) if s in known), word)
            if word and word not in out:
                out.append(word)
                if len(self._given) >= REMEMBERED:
                    self._given.clear()
                self._given[word] = _trim(unicodedata.normalize("NFC", given))
        if len(out) > MAX_WORDS:
            raise AnnotError(f"a search takes at most {MAX_WORDS} words, got {len(out):,}")
        return out

    def search(self, words: Sequence[str] = (), like: Path | bytes | None = None, *, mode: str = "combined",
               require: Sequence[str] = (), exclude: Sequence[str] = (), folder: Path | None = None,
               n: int = 20, scope: str = "auto", max_pixels: int | None = None, all_results: bool = False,
               ) -> list[Hit]:
        """The photos found, best first (:meth:`find` says more of the search)."""
        return self.find(words, like, mode=mode, require=require, exclude=exclude, folder=folder, n=n, scope=scope,
                         max_pixels=max_pixels, all_results=all_results).hits

    def find(self, words: Sequence[str] = (), like: Path | bytes | None = None, *, mode: str = "combined",
             require: Sequence[str] = (), exclude: Sequence[str] = (), folder: Path | None = None,
             n: int = 20, scope: str = "auto", max_pixels: int | None = None, all_results: bool = False) -> Found:
        """A search: its photos, the scope it covered, and whether no photo had every word (then the tags count
        photos with some of them, those with more first). A search by words ends where the evidence ends: a photo
        counts by its tags where they reach :meth:`evidence_cut`, and in the combined mode only photos with that
        evidence are shown (the shared space orders them); ``left_out`` counts the others, which ``all_results``
        shows too. Words none of which stands for a vocabulary word find nothing there (``space`` still ranks by
        their word vectors)."""
        if mode not in MODES:
            raise SettingsError("search.mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
        if n < 1:
            raise AnnotError(f"-n must be a whole number >= 1, got {n}")
        words = self.query_words(words)
        scope = self.scope(scope)
        if not words and like is None:
            raise AnnotError("say what to search for: words, or --like IMAGE")
        rankings: dict[str, Ranking] = {}
        if like is not None:
            rankings["like"] = self.nearest(self.image_query(like, max_pixels))
        unread = bool(words) and all(not self.meaning(w)[1] for w in words)
        if words and (mode == "space" or (mode == "combined" and not unread)):  # no reading: no evidence to show
            try:
                rankings["space"] = self.nearest(self.text_query(words))
            except (WordVectorError, AnnotError):
                if mode == "space":
                    raise
        partial = False
        cut = None if all_results else self.evidence_cut()
        if words and mode in ("combined", "tags"):
            rankings["tags"] = self.by_tags(words, cut=cut)
            if len(words) > 1 and not self._kept(rankings["tags"][0], scope, require, exclude, folder).any():
                rankings["tags"], partial = self.by_tags(words, every=False, cut=cut), True
        if not rankings:
            return Found([], scope, partial, tuple(words), **self._readings(words))
        everything = self._kept(np.concatenate([rows for rows, _ in rankings.values()]), scope, require, exclude,
                                folder)  # a mask: a row in two rankings is set twice
        kept = everything
        if cut is not None and "tags" in rankings and len(rankings["tags"][0]) and like is None:
            kept = everything & self._kept(rankings["tags"][0], scope, require, exclude, folder)  # the evidence
            if mode == "tags":  # what the cut left out of the tags themselves
                weaker = self.by_tags(words, every=not partial)[0]
                everything = self._kept(weaker, scope, require, exclude, folder)
        return Found(self._fused(rankings, kept, n), scope, partial, tuple(words),
                     int(everything.sum() - kept.sum()), **self._readings(words))

    def _readings(self, words: Sequence[str]) -> dict[str, Any]:
        """How the query's words outside the vocabulary were read: ``read_as`` and ``unknown`` of :class:`Found`."""
        read_as, unknown = {}, []
        for word in words:
            found, source = self.meaning(word)
            if source in ("word vectors", "multilingual"):
                read_as[word] = [self.view.vocabulary[j] for j, _ in found]
            elif not source:
                unknown.append(word)
        return {"read_as": read_as, "unknown": tuple(unknown)}

    def _kept(self, rows: NDArray[np.int64], scope: str, require: Sequence[str], exclude: Sequence[str],
              folder: Path | None) -> NDArray[np.bool_]:
        """Which rows of the view a search may show: in the scope, passing the filters (a mask over the view)."""
        if scope != "all":
            rows = rows[self.view.library[rows] == (scope == "library")]
        kept = np.zeros(len(self.view), bool)
        kept[self._filtered(rows, require, exclude, folder)] = True
        return kept

    def _fused(self, rankings: dict[str, Ranking], kept: NDArray[np.bool_], n: int) -> list[Hit]:
        """The ``n`` best photos by reciprocal-rank fusion of the rankings (or the one ranking's own scores)."""
        scores = np.zeros(len(self.view))
        found_by = {name: np.zeros(len(self.view), bool) for name in rankings}
        for name, (rows, values) in rankings.items():  # over the photos that pass
            rows, values = rows[kept[rows]], values[kept[rows]]
            np.add.at(scores, rows, values if len(rankings) == 1 else 1.0 / (FUSION + np.arange(1, len(rows) + 1)))
            found_by[name][rows] = True
        hit = np.flatnonzero(np.logical_or.reduce(list(found_by.values())))
        best = (hit[np.argsort(-scores[hit], kind="stable")[:n]] if len(hit) else hit).tolist()
        ids = [int(self.view.ids[r]) for r in best]
        paths = image_paths(self.model.store.db, ids)
        return [Hit(i, paths.get(i, ""), float(scores[r]), self.view.kind(r),
                    tuple(name for name, hits in found_by.items() if hits[r]), tuple(self.view.tags(r)))
                for i, r in zip(ids, best, strict=True)]

    def _filtered(self, rows: NDArray[np.int64], require: Sequence[str], exclude: Sequence[str],
                  folder: Path | None) -> NDArray[np.int64]:
        """The candidate rows that pass the filters: every required tag, no excluded one, under the folder."""
        position = {w: j for j, w in enumerate(self.view.vocabulary)}
        for tag in map(normalize_tag, require):
            if tag not in position:
                return rows[:0]
            rows = rows[self.view.has_word(rows, position[tag])]
        for tag in map(normalize_tag, exclude):
            if tag in position:
                rows = rows[~self.view.has_word(rows, position[tag])]
        if folder is not None and len(rows):
            prefix = str(Path(folder).resolve()).rstrip("/") + "/"
            inside = paths_under(self.model.store.db, self.view.ids[rows].tolist(), prefix)
            rows = rows[np.isin(self.view.ids[rows], np.asarray(sorted(inside), np.int64))]
        return rows
