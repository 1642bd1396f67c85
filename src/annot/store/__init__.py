"""The store directory: its manifest, its database, its files, and the lock that keeps one writer at a time."""

from annot.store.directory import DATABASE, MANIFEST, StoreDir, remove_stale_scratch
from annot.store.files import TEMPORARY, ChangedMeanwhile, StoredFile, atomic_write, sha256_file
from annot.store.lock import StoreBusy
from annot.store.manifest import FORMAT_VERSION, Manifest

__all__ = [
    "DATABASE",
    "FORMAT_VERSION",
    "MANIFEST",
    "TEMPORARY",
    "ChangedMeanwhile",
    "Manifest",
    "StoreBusy",
    "StoreDir",
    "StoredFile",
    "atomic_write",
    "remove_stale_scratch",
    "sha256_file",
]
