"""Import a corpus into a store and make sure its images' features are cached (resumable; locally or on Ray)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from annot.errors import CorpusError
from annot.features.cache import FeatureCache
from annot.features.encoders import ImageEncoder
from annot.features.images import feature_key
from annot.indexer.corpus import Corpus
from annot.indexer.distributed import connect, extract_with_ray
from annot.indexer.importer import ImportReport, import_corpus
from annot.progress import Progress
from annot.store import StoreDir


@dataclass
class Extracted:
    """The imported corpus (``imported``), its decodable images (``items``: id and path), the cache holding their
    features, every unreadable image with why, and how many features were extracted and found cached."""

    imported: ImportReport
    items: list[tuple[int, Path]]
    cache: FeatureCache
    unreadable: dict[str, str] = field(default_factory=dict)
    extracted: int = 0
    cached: int = 0


def feature_cache(store: StoreDir, encoder: ImageEncoder, dtype: str, upright: bool) -> FeatureCache:
    return FeatureCache(store.features_dir / feature_key(encoder.key, upright), encoder.dim, dtype, upright)


def extract_features(store: StoreDir, corpus: Corpus, split: str, encoder: ImageEncoder, *, upright: bool,
                     strict: bool, batch_size: int, progress: Progress, dtype: str = "float32",
                     ray_address: str | None = None) -> Extracted:
    """Import ``corpus`` as ``split`` and cache its features; with ``strict`` an image that does not decode is an
    error naming it, else it is counted."""
    with progress.task(f"importing {corpus.source.name}", len(corpus.entries)) as advance:
        imported = import_corpus(store, corpus, split, strict=strict, progress=advance)
    cache = feature_cache(store, encoder, dtype, upright)
    result = Extracted(imported, [], cache, dict(imported.unreadable))
    with progress.task(f"extracting features ({encoder.name})", len(imported.items)) as advance:
        if ray_address:
            result.extracted, result.cached, _ = extract_with_ray(connect(ray_address), cache, imported.items, encoder,
                                                                  batch_size, advance)
        else:
            report = cache.extract(imported.items, encoder, batch_size=batch_size, progress=advance)
            result.extracted, result.cached = report.extracted, report.cached
    failures = cache.failures()
    for image_id, path in imported.items:
        if image_id in failures:
            result.unreadable[str(path)] = failures[image_id].split(": ", 1)[-1]
    if strict and len(result.unreadable) > len(imported.unreadable):
        first = next(p for p in result.unreadable if p not in imported.unreadable)
        raise CorpusError(f"{first}: {result.unreadable[first]}")
    result.items = [(i, p) for i, p in imported.items if i not in failures]
    return result
