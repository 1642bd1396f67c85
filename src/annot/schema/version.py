"""The schema this annot reads and writes, as plain names: its version (the number of migrations in
:mod:`annot.schema.tables`) and each table's columns in the order the tables declare them (``tests/test_store.py``
checks that the two agree). A reader checks a database's version and reads its layers through views with these,
without importing SQLAlchemy."""

SCHEMA_VERSION = 6

COLUMNS: dict[str, tuple[str, ...]] = {
    "annotations": ("image_id", "rank", "tag_id", "score", "confidence"),
    "corrections": ("id", "image_id", "tag_id", "action", "created_at", "source"),
    "image_tags": ("image_id", "tag_id"),
    "images": ("id", "path", "sha256", "width", "height", "split", "added_at"),
    "photo_files": ("image_id", "size", "mtime_ns", "state", "error", "annotated_at", "model", "inode", "ctime_ns",
                    "same_as", "taken_at"),
    "predictions": ("run_id", "image_id", "rank", "tag_id", "score", "confidence"),
    "runs": ("id", "created_at", "method", "params_json", "dataset", "store_manifest_sha", "precision", "recall", "f1",
             "n_plus", "n_images"),
    "schema_info": ("key", "value"),
    "tags": ("id", "word"),
    "word_metrics": ("run_id", "tag_id", "precision", "recall", "f1", "n_truth", "n_predicted", "n_correct"),
}
