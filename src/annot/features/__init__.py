"""Image encoders (CNN features) and word vectors: the two views that CCA relates."""

from annot.features.encoders import ImageEncoder, build_encoder, encoder_names, register_encoder
from annot.features.words import WordVectors, load_word_vectors

__all__ = [
    "ImageEncoder",
    "WordVectors",
    "build_encoder",
    "encoder_names",
    "load_word_vectors",
    "register_encoder",
]
