"""Building and growing a store: import a corpus, extract features, fit the projection, write the FAISS indexes."""

from annot.indexer.build import IndexReport, build_index, rebuild
from annot.indexer.corpus import Corpus, CorpusEntry, read_corpus, read_vocabulary
from annot.indexer.grow import GrowReport, add_images, refit, remove_images

__all__ = ["Corpus", "CorpusEntry", "GrowReport", "IndexReport", "add_images", "build_index", "read_corpus",
           "read_vocabulary", "rebuild", "refit", "remove_images"]
