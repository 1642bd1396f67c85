"""The loaded store: a store's fitted model read once (the projection, the image index, the indexed images and their
tags, the confidence calibration) and the annotation methods over it. What every reader holds: ``annot query``,
``annot eval``, the photo library and the server."""

from annot.model.loaded import StoreModel, labels_from_arrays, labels_to_arrays

__all__ = ["StoreModel", "labels_from_arrays", "labels_to_arrays"]
