"""The store's SQL schema (SQLAlchemy Core) and its migrations: the one place that talks SQL.

The tables are imported when first named (``from annot.schema import images``): a reader that only runs annot's
own SQL (:class:`Database`'s ``raw`` and ``rows``) never imports SQLAlchemy."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from annot.schema.database import Database
from annot.schema.version import SCHEMA_VERSION

if TYPE_CHECKING:
    from annot.schema.tables import (
        corrections,
        image_tags,
        images,
        metadata,
        photo_annotations,
        photo_files,
        predictions,
        runs,
        tags,
        word_metrics,
    )

_TABLES = {"corrections", "image_tags", "images", "metadata", "photo_annotations", "photo_files", "predictions",
           "runs", "tags", "word_metrics"}


def __getattr__(name: str) -> Any:
    if name in _TABLES:
        return getattr(import_module("annot.schema.tables"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SCHEMA_VERSION",
    "Database",
    "corrections",
    "image_tags",
    "images",
    "metadata",
    "photo_annotations",
    "photo_files",
    "predictions",
    "runs",
    "tags",
    "word_metrics",
]
