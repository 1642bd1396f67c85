"""CNN-R as a store's annotation method (``--method cnn-r``) and as an image encoder (``--encoder cnnr:STORE``).

A prediction is the network's regressed word vector, answered by the nearest words of the store's vocabulary
(centred cosine, :mod:`annot.methods.cnnr.answer`), or with ``open_vocabulary`` by the nearest words of the whole
word-vector file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from annot.errors import EncoderError, StoreError
from annot.features.encoders import ImageEncoder, register_encoder_family
from annot.methods.base import AnnotationMethod, Prediction, register_method
from annot.methods.cnnr.answer import WordIndex, open_vocabulary_index, vocabulary_index
from annot.methods.cnnr.network import CNNREncoder, load_cnnr, read_model_file
from annot.settings import ScoringSettings
from annot.store import StoreDir

if TYPE_CHECKING:  # the layer above, which builds the methods
    from annot.model import StoreModel


@register_method
class CNNRMethod(AnnotationMethod):
    """CNN-R (§3.5): the network regresses an image's mean tag vector; the nearest vocabulary words are its tags."""

    name = "cnn-r"
    summary = "CNN-R: nearest words to the regressed word vector (annot train-cnnr)"
    trained = True

    def __init__(self, model: StoreModel, encoder: CNNREncoder, words: WordIndex, positions: NDArray[np.int64],
                 info: dict[str, Any]) -> None:
        super().__init__(model)
        self._encoder, self.words, self.positions, self.info = encoder, words, positions, info
        self._open: WordIndex | None = None

    @classmethod
    def open(cls, model: StoreModel) -> AnnotationMethod:
        record = model.manifest.cnnr
        root = model.store.root
        if record is None:
            raise StoreError(f"{root}: holds no trained CNN-R; run `annot train-cnnr --store {root}`")
        path = model.store.path(record.file.path)
        model.store.read_bytes(record.file, "CNN-R model")  # present and unchanged, or a clear error
        saved = read_model_file(path)  # read once: the network and the vocabulary's vectors
        network, meta = load_cnnr(path, saved=saved)
        index, positions = vocabulary_index(saved, path, model.vocabulary)
        return cls(model, CNNREncoder(network, meta, "vector"), index, positions, dict(record.info))

    def encoder(self) -> ImageEncoder:
        return self._encoder

    def predict(self, X: NDArray[np.floating], scoring: ScoringSettings, exclude: NDArray[np.int64] | None = None,
                ) -> list[Prediction]:
        similarity, nearest = self.words.nearest(X, scoring.n_tags)
        return [Prediction(self.positions[row], s.astype(np.float64), [[] for _ in row])
                for s, row in zip(similarity, nearest, strict=True)]

    def open_vocabulary(self, V: NDArray[np.floating], n_tags: int) -> list[list[tuple[str, float]]]:
        """Regressed vectors answered by the nearest words of the whole word-vector file."""
        if self._open is None:
            self._open = open_vocabulary_index(self.model.manifest.words.source, self.words)
        similarity, positions = self._open.nearest(V, n_tags)
        return [[(self._open.words[int(p)], float(s)) for s, p in zip(srow, prow, strict=True)]
                for srow, prow in zip(similarity, positions, strict=True)]

    def params(self, scoring: ScoringSettings) -> dict[str, Any]:
        return {"method": self.name, "n_tags": scoring.n_tags, **{k: v for k, v in self.info.items()
                                                                  if k not in ("trained_at",)}}


def cnnr_features(root: str) -> ImageEncoder:
    """``cnnr:STORE``: the fine-tuned penultimate activations of the CNN-R trained in STORE."""
    try:
        with StoreDir.open(Path(root)) as store:
            record = store.manifest().cnnr
            path = store.path(record.file.path) if record is not None else None
    except StoreError as exc:
        raise EncoderError(f"cnnr:{root}: {exc}") from exc
    if path is None:
        raise EncoderError(f"{root}: holds no trained CNN-R; run `annot train-cnnr --store {root}` first")
    model, meta = load_cnnr(path)
    return CNNREncoder(model, meta, "features")


register_encoder_family("cnnr:", cnnr_features)
