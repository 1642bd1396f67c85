"""What a fitted store saves beside its model from its indexed training images: each word's standards (for
standardised scores) and the confidence calibration, both made by cross-validation on those images."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from annot.features.words import load_word_vectors
from annot.fitting.calibration import calibrate, calibration_key
from annot.fitting.cv import held_out_scores
from annot.fitting.fit import word_matrix
from annot.methods.cca_knn import CCAKNN, standards_key
from annot.model.loaded import StoreModel
from annot.progress import Progress
from annot.retrieval.scoring import word_standards
from annot.schema.queries import label_matrix
from annot.settings import Score
from annot.store import StoreDir
from annot.store.manifest import CalibrationRecord, Manifest, StandardsRecord


@dataclass(frozen=True)
class TrainingSet:
    """The indexed training images (in id order) as cross-validation reads them: features, tags, word vectors."""

    X: NDArray[np.float32]
    labels: NDArray[np.bool_]
    E: NDArray[np.float32]
    has_vector: NDArray[np.bool_]


def indexed_training_set(model: StoreModel) -> TrainingSet:
    """A loaded store's indexed training images, read from its files (``add`` and ``remove`` recompute standards)."""
    ids = np.sort(model.ids)
    X, labels = model.feature_cache().load(ids), label_matrix(model.store.db, ids.tolist(), model.tag_ids)
    E, has_vector, _ = word_matrix(load_word_vectors(model.manifest.words.source), tuple(model.vocabulary))
    return TrainingSet(X, labels, E, has_vector)


CALIBRATED = ("cca-knn", "nn")  # the methods whose held-out annotations cross-validation makes


def save_calibration(store: StoreDir, tag: str, progress: Progress | None = None,
                     training: TrainingSet | None = None) -> Manifest | None:
    """Calibrate the confidence of the store's own annotations on held-out training images
    (:func:`annot.fitting.calibration.calibrate`), save it and record it in the manifest. ``training``: the indexed
    training images as the caller holds them (else read from the store's files)."""
    settings = store.manifest().settings
    if settings.scoring.method not in CALIBRATED:
        return None
    if training is None:
        training = indexed_training_set(StoreModel(store))
    calibration = calibrate(training.X, training.labels, training.E, training.has_vector, settings, progress)
    file = store.save_arrays(f"models/calibration-{tag}.npz", calibration.to_arrays())
    record = CalibrationRecord(file, calibration_key(settings), calibration.measured)
    manifest = store.manifest().touched(calibration=record)
    store.write_manifest(manifest)
    return manifest


def save_standards(store: StoreDir, tag: str, progress: Progress | None = None,
                   training: TrainingSet | None = None) -> Manifest:
    """Each word's standards for the store's own scoring settings (leave-one-out, or held out:
    :func:`annot.fitting.cv.held_out_scores`), saved and recorded in the manifest; returns the new manifest.
    ``training``: the indexed training images as the caller holds them (else read from the store's files)."""
    model = StoreModel(store)
    scoring = model.settings.scoring
    if scoring.score is Score.HELD_OUT:
        held = training if training is not None else indexed_training_set(model)
        mean, spread = held_out_scores(held.X, held.labels, held.E, held.has_vector, model.settings, progress)
    else:
        method = CCAKNN(model)
        mean, spread = word_standards(method.leave_one_out_scores(scoring))
    file = store.save_arrays(f"models/standards-{tag}.npz", {"mean": mean, "spread": spread})
    manifest = store.manifest().touched(standards=StandardsRecord(file, standards_key(model, scoring)))
    store.write_manifest(manifest)
    return manifest


__all__ = ["CALIBRATED", "TrainingSet", "indexed_training_set", "save_calibration", "save_standards"]
