"""Building and growing a store: import a corpus, extract features, fit the projection, write the FAISS indexes.

The names below are imported when first used, so that reading a corpus's tags does not load the fitting."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from annot.indexer.build import IndexReport, build_index, rebuild
    from annot.indexer.corpus import Corpus, CorpusEntry, read_corpus, read_vocabulary
    from annot.indexer.grow import GrowReport, add_images, refit, remove_images

_WHERE = {"IndexReport": "build", "build_index": "build", "rebuild": "build", "Corpus": "corpus",
          "CorpusEntry": "corpus", "read_corpus": "corpus", "read_vocabulary": "corpus", "GrowReport": "grow",
          "add_images": "grow", "refit": "grow", "remove_images": "grow"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f"annot.indexer.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'annot.indexer' has no attribute {name!r}")


__all__ = ["Corpus", "CorpusEntry", "GrowReport", "IndexReport", "add_images", "build_index", "read_corpus",
           "read_vocabulary", "rebuild", "refit", "remove_images"]
