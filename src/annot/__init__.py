"""annot: automatic image annotation with CNN features, word vectors and CCA (Murthy, Maji & Manmatha, ICMR 2015).

The public Python API::

    import annot
    store = annot.open_store("corel5k.annot")
    store.build("train.jsonl")
    store.query(["photo.jpg"])        # tags, nothing kept
    store.annotate(["~/Pictures"])     # the photo library: kept, incremental
    store.search(["beach"])
"""

from annot.api import Store, StoreInfo, open_store
from annot.errors import AnnotError, Conflict, CorpusError, NotFound, StoreError
from annot.evaluation.runs import WordMetrics
from annot.library.corrections import Correction
from annot.library.view import Photo, PhotoTag, WordCount
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
