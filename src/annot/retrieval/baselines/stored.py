"""Baselines in a store: their training data from the feature cache, their fitted parameters in ``models/``."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from annot.errors import AnnotError, StoreError
from annot.features.text import normalize_features
from annot.indexer.features import FeatureCache
from annot.progress import NoProgress, Progress
from annot.retrieval.baselines import BASELINES, Baseline, TrainingData
from annot.store import Store, save_arrays

log = logging.getLogger(__name__)


def training_data(store: Store, manifest: dict[str, Any], ids: NDArray[np.int64], labels: NDArray[np.bool_]) -> TrainingData:
    """The indexed training images' cached features, normalised as the store normalises them (unit rows)."""
    encoder = manifest["encoder"]
    cache = FeatureCache(store.features_dir / encoder["key"], int(encoder["dim"]))
    missing = np.setdiff1d(ids, cache.cached_ids())
    if len(missing):
        raise StoreError(f"{cache.folder}: features of {len(missing)} indexed images are missing (first id {missing[0]})")
    kind = manifest["projection"].get("normalization", "none")
    return TrainingData(normalize_features(cache.load(ids), "l2" if kind == "none" else kind), labels)


def fingerprint(m: dict[str, Any], ids: NDArray[np.int64]) -> str:
    """What a fitted baseline depends on: the training images, the encoder, the feature normalisation."""
    digest = hashlib.sha256(np.ascontiguousarray(ids, np.int64).tobytes())
    digest.update(f"{m['encoder']['key']}|{m['projection'].get('normalization')}".encode())
    return digest.hexdigest()[:16]


def construct(cls: type[Baseline], store: Store, data: TrainingData) -> Baseline:
    """The method over the store's data, or a one-line reason naming the store why it cannot run there."""
    try:
        return cls(data)
    except AnnotError as exc:
        raise AnnotError(f"{store.root}: {exc}") from exc


def known(name: str) -> type[Baseline]:
    if name not in BASELINES:
        raise AnnotError(f"unknown method {name!r} (baselines: {', '.join(BASELINES)})")
    return BASELINES[name]


@dataclass(frozen=True)
class FitReport:
    method: str
    params: dict[str, Any]
    seconds: float
    file: str

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params, "fit_seconds": round(self.seconds, 3), "file": self.file}


def fit_baseline(store_root: Path, name: str, progress: Progress | None = None) -> FitReport:
    """Fit a baseline on a store's indexed training images and keep its parameters in the store."""
    from annot.retrieval.model import AnnotationModel

    cls = known(name)
    store = Store.open(Path(store_root))
    try:
        model = AnnotationModel(store)
        manifest = model.manifest  # read once: the features to load, the fingerprint, the entry to add
        baseline = construct(cls, store, training_data(store, manifest, model.ids, model.labels))
        start = time.perf_counter()
        baseline.fit(progress or NoProgress())
        seconds = time.perf_counter() - start
        key = fingerprint(manifest, model.ids)
        file = f"models/method-{name}-{key[:8]}-{int(time.time())}.npz"
        save_arrays(store.path(file), baseline.arrays())
        methods = dict(manifest.get("methods", {}))
        previous = methods.get(name, {}).get("file")
        methods[name] = {"file": file, "params": baseline.params(), "fit_seconds": round(seconds, 3), "training": key,
                         "fitted_at": datetime.now(UTC).isoformat(timespec="seconds")}
        store.write_manifest({**manifest, "methods": methods})
        if previous and previous != file:
            store.path(previous).unlink(missing_ok=True)
        return FitReport(name, baseline.params(), seconds, file)
    finally:
        store.close()


def load_baseline(store: Store, name: str, ids: NDArray[np.int64], labels: NDArray[np.bool_]) -> Baseline:
    """A baseline ready to annotate: restored from the store, or (for methods that fit in a moment) fitted now."""
    cls = known(name)
    manifest = store.manifest()
    entry = manifest.get("methods", {}).get(name)
    baseline = construct(cls, store, training_data(store, manifest, ids, labels))
    if entry is not None:
        if entry.get("training") != fingerprint(manifest, ids):
            raise StoreError(f"{store.root}: {name} was fitted on other training images or features; "
                             f"run `annot fit {name} --store {store.root}` again")
        path = store.path(entry["file"])
        try:
            with np.load(path) as arrays:
                baseline.restore(dict(entry["params"]), dict(arrays))
        except (OSError, KeyError, ValueError) as exc:
            raise StoreError(f"{path}: unreadable {name} parameters ({exc})") from exc
        return baseline
    if cls.trained:
        raise StoreError(f"{store.root}: {name} is not fitted in this store; run `annot fit {name} --store {store.root}`")
    log.info("%s is not fitted in %s: choosing its settings now (annot fit stores them)", name, store.root)
    baseline.fit(NoProgress())
    return baseline
