"""annot: automatic image annotation with CNN features, word vectors and CCA (Murthy, Maji & Manmatha, ICMR 2015).

The public Python API::

    import annot
    store = annot.open_store("corel5k.annot")
    store.build("train.jsonl")
    store.query(["photo.jpg"])        # tags, nothing kept
    store.annotate(["~/Pictures"])     # the photo library: kept, incremental
    store.search(["beach"])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from annot.errors import AnnotError, Conflict, CorpusError, NotFound, StoreError

if TYPE_CHECKING:
    from annot.api import Store, StoreInfo, open_store
    from annot.evaluation.runs import WordMetrics
    from annot.library.corrections import Correction
    from annot.library.photoview import PhotoTag
    from annot.library.view import Photo, WordCount
    from annot.methods import Annotation, TagScore, Vote
    from annot.settings import (
        BuildSettings,
        EncoderSettings,
        IndexSettings,
        ProjectionSettings,
        ScoringSettings,
        SettingsError,
        TextSettings,
    )
    from annot.store import StoreBusy

# the public names, imported when first used: a command that needs a part of annot loads only that part
_WHERE = {
    "Store": "annot.api", "StoreInfo": "annot.api", "open_store": "annot.api",
    "WordMetrics": "annot.evaluation.runs", "Correction": "annot.library.corrections",
    "Photo": "annot.library.view", "PhotoTag": "annot.library.view", "WordCount": "annot.library.view",
    "Annotation": "annot.methods", "TagScore": "annot.methods", "Vote": "annot.methods",
    "BuildSettings": "annot.settings", "EncoderSettings": "annot.settings", "IndexSettings": "annot.settings",
    "ProjectionSettings": "annot.settings", "ScoringSettings": "annot.settings", "SettingsError": "annot.settings",
    "TextSettings": "annot.settings", "StoreBusy": "annot.store",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'annot' has no attribute {name!r}")


__version__ = "0.2.0"

__all__ = [
    "AnnotError",
    "Annotation",
    "BuildSettings",
    "Conflict",
    "CorpusError",
    "Correction",
    "EncoderSettings",
    "IndexSettings",
    "NotFound",
    "Photo",
    "PhotoTag",
    "ProjectionSettings",
    "ScoringSettings",
    "SettingsError",
    "Store",
    "StoreBusy",
    "StoreError",
    "StoreInfo",
    "TagScore",
    "TextSettings",
    "Vote",
    "WordCount",
    "WordMetrics",
    "__version__",
    "open_store",
]
