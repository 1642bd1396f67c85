"""One exception family for every domain error; the CLI turns each into a one-line message and a non-zero exit, and
the server into a JSON error whose status follows the class (:class:`NotFound` 404, :class:`Conflict` 409, a
setting's error 422, the store's own trouble 500, any other 400). Messages name settings (``search.mode``), not
flags or query parameters: the CLI and the server say them in their own words."""

from __future__ import annotations


class AnnotError(Exception):
    """Base of every error a user can cause and fix (bad input, missing store, wrong weights)."""

    exit_code = 1


class NotFound(AnnotError):
    """Something a request names does not exist: a photo (by id or path), a run."""


class Conflict(AnnotError):
    """The request cannot be done in the store's present state (another process is changing it)."""


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
