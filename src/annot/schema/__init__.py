"""The store's SQL schema (SQLAlchemy Core) and its migrations: the one place that talks SQL."""

from annot.schema.database import Database
from annot.schema.tables import SCHEMA_VERSION, image_tags, images, metadata, predictions, runs, tags, word_metrics

__all__ = [
    "SCHEMA_VERSION",
    "Database",
    "image_tags",
    "images",
    "metadata",
    "predictions",
    "runs",
    "tags",
    "word_metrics",
]
