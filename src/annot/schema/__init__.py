"""The store's SQL schema (SQLAlchemy Core) and its migrations: the one place that talks SQL."""

from annot.schema.database import Database
from annot.schema.tables import (
    SCHEMA_VERSION,
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
