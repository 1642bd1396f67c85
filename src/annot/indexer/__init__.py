"""Building a store: import a corpus, extract features, fit the projection, write the FAISS indexes."""

from annot.indexer.build import IndexConfig, IndexReport, build_index
from annot.indexer.corpus import Corpus, CorpusEntry, read_corpus, read_vocabulary

__all__ = ["Corpus", "CorpusEntry", "IndexConfig", "IndexReport", "build_index", "read_corpus", "read_vocabulary"]
