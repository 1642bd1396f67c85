"""One exception family for every domain error; the CLI turns each into a one-line message and a non-zero exit."""

from __future__ import annotations


class AnnotError(Exception):
    """Base of every error a user can cause and fix (bad input, missing store, wrong weights)."""

    exit_code = 1


class CorpusError(AnnotError):
    """A corpus file (JSONL or CSV) or an image it names is unusable."""


class StoreError(AnnotError):
    """A store is missing, incomplete, or written by another format version."""


class EncoderError(AnnotError):
    """An image encoder cannot be built or its weights do not fit the network."""


class WordVectorError(AnnotError):
    """Word vectors cannot be loaded or do not cover what is asked."""


class ProjectionError(AnnotError):
    """A projection cannot be fitted or applied (bad shapes, too many components, not fitted)."""
