"""Tables of a store's metadata database and the numbered migrations that create them."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from annot.schema.version import SCHEMA_VERSION

metadata = MetaData()

schema_info = Table(
    "schema_info",
    metadata,
    Column("key", String, primary_key=True),
    Column("value", String, nullable=False),
)

images = Table(
    "images",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("path", String, nullable=False, unique=True),
    Column("sha256", String(64), nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("split", String, nullable=False),
    Column("added_at", DateTime, nullable=False),
)

tags = Table(
    "tags",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("word", String, nullable=False, unique=True),
)

image_tags = Table(
    "image_tags",
    metadata,
    Column("image_id", Integer, primary_key=True),
    Column("tag_id", Integer, primary_key=True),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("created_at", DateTime, nullable=False),
    Column("method", String, nullable=False),
    Column("params_json", Text, nullable=False),
    Column("dataset", String, nullable=False),
    Column("store_manifest_sha", String(64), nullable=False),
    Column("precision", Float, nullable=False),
    Column("recall", Float, nullable=False),
    Column("f1", Float, nullable=False),
    Column("n_plus", Integer, nullable=False),
    Column("n_images", Integer, nullable=False),
)

predictions = Table(
    "predictions",
    metadata,
    Column("run_id", Integer, primary_key=True),
    Column("image_id", Integer, primary_key=True),
    Column("rank", Integer, primary_key=True),
    Column("tag_id", Integer, nullable=False),
    Column("score", Float, nullable=False),
    Column("confidence", Float),  # schema 2
)

word_metrics = Table(
    "word_metrics",
    metadata,
    Column("run_id", Integer, primary_key=True),
    Column("tag_id", Integer, primary_key=True),
    Column("precision", Float, nullable=False),
    Column("recall", Float),
    Column("f1", Float, nullable=False),
    Column("n_truth", Integer, nullable=False),
    Column("n_predicted", Integer, nullable=False),
    Column("n_correct", Integer, nullable=False),
)

# -- the photo library: a user's photos (rows of ``images`` with split ``collection``), tagged by the model -------
photo_files = Table(
    "photo_files",
    metadata,
    Column("image_id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("state", String, nullable=False),  # annotated, unreadable, missing, duplicate
    Column("error", Text),
    Column("annotated_at", DateTime),
    Column("model", String),  # the projection the annotations were made with (its file name)
    Column("inode", BigInteger),  # schema 3: with ctime_ns, tells a replaced file from an unchanged one
    Column("ctime_ns", BigInteger),  # schema 3
    Column("same_as", Integer),  # schema 4: a duplicate (state ``duplicate``) is linked to the photo it repeats
    Column("taken_at", DateTime),  # schema 6: when it was taken (EXIF, the camera's clock), where the file says
)

photo_annotations = Table(
    "annotations",
    metadata,
    Column("image_id", Integer, primary_key=True),
    Column("rank", Integer, primary_key=True),
    Column("tag_id", Integer, nullable=False),
    Column("score", Float, nullable=False),
    Column("confidence", Float),
)

corrections = Table(
    "corrections",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("image_id", Integer, nullable=False),
    Column("tag_id", Integer, nullable=False),
    Column("action", String, nullable=False),  # confirm, reject, add
    Column("created_at", DateTime, nullable=False),
    Column("source", String, nullable=False),
)

Index("image_tags_by_tag", image_tags.c.tag_id)
Index("images_by_split", images.c.split)
Index("annotations_by_tag", photo_annotations.c.tag_id)
Index("corrections_by_image", corrections.c.image_id)
COLLECTION_TABLES = (photo_files, photo_annotations, corrections)


def _m001_initial(conn: Connection) -> None:
    metadata.create_all(conn, tables=[t for t in metadata.sorted_tables if t not in COLLECTION_TABLES])
    conn.exec_driver_sql("ALTER TABLE predictions DROP COLUMN confidence")  # as version 1 made it


def _m002_photo_library(conn: Connection) -> None:
    metadata.create_all(conn, tables=list(COLLECTION_TABLES))
    conn.exec_driver_sql("ALTER TABLE predictions ADD COLUMN confidence DOUBLE PRECISION")


def _m003_file_identity(conn: Connection) -> None:
    present = {str(name) for (name,) in conn.exec_driver_sql(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'photo_files'")}
    for name in ("inode", "ctime_ns"):  # a store made at version 2 lacks them; one created since has them
        if name not in present:
            conn.exec_driver_sql(f"ALTER TABLE photo_files ADD COLUMN {name} BIGINT")


def _m004_duplicates(conn: Connection) -> None:
    present = {str(name) for (name,) in conn.exec_driver_sql(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'photo_files'")}
    if "same_as" not in present:
        conn.exec_driver_sql("ALTER TABLE photo_files ADD COLUMN same_as INTEGER")


PHOTO_TAGS_VIEW = """
CREATE OR REPLACE VIEW photo_tags AS
WITH last AS (
    SELECT image_id, tag_id, action FROM (
        SELECT image_id, tag_id, action,
               row_number() OVER (PARTITION BY image_id, tag_id ORDER BY id DESC) AS latest
        FROM corrections) WHERE latest = 1),
shown AS (
    SELECT a.image_id, a.tag_id, a.confidence, 'predicted' AS source
    FROM annotations a LEFT JOIN last l ON l.image_id = a.image_id AND l.tag_id = a.tag_id
    WHERE l.action IS NULL OR l.action = 'clear'
    UNION ALL
    SELECT l.image_id, l.tag_id, 1.0, CASE l.action WHEN 'confirm' THEN 'confirmed' ELSE 'added' END
    FROM last l JOIN photo_files f ON f.image_id = l.image_id WHERE l.action IN ('confirm', 'add')
    UNION ALL
    SELECT t.image_id, t.tag_id, 1.0, 'training'
    FROM image_tags t JOIN images i ON i.id = t.image_id
    WHERE i.split = 'train' AND t.image_id NOT IN (SELECT image_id FROM photo_files))
SELECT i.path, w.word, s.confidence, s.source, s.image_id
FROM shown s JOIN images i ON i.id = s.image_id JOIN tags w ON w.id = s.tag_id
"""

CORRECTIONS_VIEW = """
CREATE OR REPLACE VIEW corrections_view AS
SELECT c.id, c.created_at, i.path, w.word, c.action, c.source, c.image_id
FROM corrections c JOIN images i ON i.id = c.image_id JOIN tags w ON w.id = c.tag_id
"""


def _m005_readable_views(conn: Connection) -> None:
    """Views a person reads: each photo's shown tags by path and word (``photo_tags``: predicted ones with the
    corrections applied, confirmed and added ones, a training image's own), and the corrections by path and word."""
    conn.exec_driver_sql(PHOTO_TAGS_VIEW)
    conn.exec_driver_sql(CORRECTIONS_VIEW)


def _m006_taken_at(conn: Connection) -> None:
    """When each photo was taken, from its EXIF (photos annotated before show their file's time until annotated
    again)."""
    present = {str(name) for (name,) in conn.exec_driver_sql(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'photo_files'")}
    if "taken_at" not in present:
        conn.exec_driver_sql("ALTER TABLE photo_files ADD COLUMN taken_at TIMESTAMP")


# Numbered migrations: entry i brings a database from version i to i + 1. Append, never edit.
MIGRATIONS: list[Callable[[Connection], None]] = [_m001_initial, _m002_photo_library, _m003_file_identity,
                                                  _m004_duplicates, _m005_readable_views, _m006_taken_at]
if len(MIGRATIONS) != SCHEMA_VERSION:  # annot.schema.version names the count; a migration added raises it there
    raise RuntimeError(f"annot.schema.version.SCHEMA_VERSION is {SCHEMA_VERSION}, but there are "
                       f"{len(MIGRATIONS)} migrations")
