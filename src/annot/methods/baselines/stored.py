"""The baselines as annotation methods of a store: their training data from the feature cache, their fitted
parameters in ``models/`` (``annot fit``), one registered method per baseline."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from annot.errors import AnnotError, StoreError
from annot.features.text import normalize_features
from annot.methods.base import AnnotationMethod, FitReport, Prediction, prediction, register_method
from annot.methods.baselines import BASELINES, Baseline, TrainingData
from annot.progress import NoProgress, Progress
from annot.settings import ScoringSettings
from annot.store import Manifest
from annot.store.manifest import MethodRecord, now

if TYPE_CHECKING:  # the layer above, which builds the methods
    from annot.model import StoreModel

log = logging.getLogger(__name__)


def feature_normalization(model: StoreModel) -> str:
    """Baselines read the store's features as the store normalises them, as unit rows at the least."""
    return "l2" if model.normalization == "none" else model.normalization


def training_data(model: StoreModel) -> TrainingData:
    """The indexed training images' cached features, normalised as the baselines read them, and their tags."""
    cache = model.feature_cache()
    missing = np.setdiff1d(model.ids, cache.cached_ids())
    if len(missing):
        raise StoreError(f"{cache.folder}: features of {len(missing)} indexed images are missing (first id {missing[0]})")
    return TrainingData(normalize_features(cache.load(model.ids), feature_normalization(model)), model.labels)


def fingerprint(manifest: Manifest, ids: NDArray[np.int64]) -> str:
    """What a fitted baseline depends on: the training images, the encoder, the feature normalisation."""
    digest = hashlib.sha256(np.ascontiguousarray(ids, np.int64).tobytes())
    digest.update(f"{manifest.encoder.key}|{manifest.settings.projection.normalization.value}".encode())
    return digest.hexdigest()[:16]


class BaselineMethod(AnnotationMethod):
    """A baseline of the paper's Table 1 (``baseline``) as a store's annotation method."""

    baseline: ClassVar[type[Baseline]]

    def __init__(self, model: StoreModel, fitted: Baseline) -> None:
        super().__init__(model)
        self.fitted = fitted

    @classmethod
    def _construct(cls, model: StoreModel) -> Baseline:
        try:
            return cls.baseline(training_data(model))
        except AnnotError as exc:
            raise AnnotError(f"{model.store.root}: {exc}") from exc

    @classmethod
    def open(cls, model: StoreModel) -> AnnotationMethod:
        """Restored from the store, or (for methods that fit in a moment) fitted now."""
        entry = model.manifest.methods.get(cls.name)
        baseline = cls._construct(model)
        root = model.store.root
        if entry is not None:
            if entry.training != fingerprint(model.manifest, model.ids):
                raise StoreError(f"{root}: {cls.name} was fitted on other training images or features; "
                                 f"run `annot fit {cls.name} --store {root}` again")
            arrays = model.store.read_arrays(entry.file, f"{cls.name} parameters")
            try:
                baseline.restore(dict(entry.params), arrays)
            except (KeyError, ValueError) as exc:
                raise StoreError(f"{model.store.path(entry.file.path)}: unreadable {cls.name} parameters ({exc})") from exc
            return cls(model, baseline)
        if cls.trained:
            raise StoreError(f"{root}: {cls.name} is not fitted in this store; run `annot fit {cls.name} --store {root}`")
        log.info("%s is not fitted in %s: choosing its settings now (annot fit stores them)", cls.name, root)
        baseline.fit(NoProgress())
        return cls(model, baseline)

    @classmethod
    def fit(cls, model: StoreModel, progress: Progress | None = None) -> FitReport:
        """Fit on the store's indexed training images (hyperparameters on held-out training images) and keep it."""
        store = model.store
        baseline = cls._construct(model)
        start = time.perf_counter()
        baseline.fit(progress or NoProgress())
        seconds = time.perf_counter() - start
        key = fingerprint(model.manifest, model.ids)
        file = store.save_arrays(f"models/method-{cls.name}-{key[:8]}-{int(time.time())}.npz", baseline.arrays())
        record = MethodRecord(file, baseline.params(), key, round(seconds, 3), now())
        manifest = store.manifest()
        store.write_manifest(manifest.touched(methods={**manifest.methods, cls.name: record}))
        store.remove_unreferenced()
        return FitReport(cls.name, baseline.params(), seconds, file.path)

    def predict(self, X: NDArray[np.floating], scoring: ScoringSettings, exclude: NDArray[np.int64] | None = None,
                ) -> list[Prediction]:
        X = normalize_features(X, feature_normalization(self.model))
        scored, D = self.fitted.annotate(X, scoring.n_tags)
        blank = np.zeros(len(self.model.ids), np.float32)
        return [prediction(s, self.model.ids, blank if D is None else D[q]) for q, s in enumerate(scored)]

    def params(self, scoring: ScoringSettings) -> dict[str, Any]:
        return {"method": self.name, "n_tags": scoring.n_tags, "encoder": self.model.manifest.encoder.key,
                **self.fitted.params()}


for _baseline in BASELINES.values():
    register_method(type(f"{_baseline.__name__}Method", (BaselineMethod,),
                        {"name": _baseline.name, "trained": _baseline.trained, "baseline": _baseline,
                         "summary": (_baseline.__doc__ or _baseline.name).strip().splitlines()[0],
                         "__doc__": _baseline.__doc__}))
