"""Annotating image files with a store's model, without keeping anything (``annot query``): decode, encode with the
method's encoder, project, search, score, one batch at a time."""

from __future__ import annotations

import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from annot.errors import AnnotError, CorpusError
from annot.features.images import (
    IMAGE_SUFFIXES,
    UnreadableImage,
    decode_bytes,
    image_files,
    iter_batches,
    preprocess,
)
from annot.methods import Annotation, TagScore
from annot.methods.cnnr.method import CNNRMethod
from annot.model import StoreModel
from annot.progress import NoProgress, Progress
from annot.settings import ScoringSettings


@dataclass
class QueryResult:
    annotations: list[Annotation]
    failed: dict[str, str] = field(default_factory=dict)


def expand_inputs(inputs: Sequence[Path]) -> list[Path]:
    """Files as given; directories become their image files (sorted, recursively)."""
    paths: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found = list(image_files(item))
            if not found:
                raise CorpusError(f"{item}: directory holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            paths.extend(found)
        elif item.exists() or item.is_symlink():
            paths.append(item)
        else:
            raise CorpusError(f"{item}: no such file")
    return paths


def iter_annotations(model: StoreModel, paths: Sequence[Path], scoring: ScoringSettings, *, explain: bool = False,
                     open_vocabulary: bool = False, batch_size: int = 32, progress: Progress | None = None,
                     ) -> Iterator[tuple[list[Annotation], dict[str, str]]]:
    """Each batch's annotations and its unreadable files (path: why), in the order of ``paths``."""
    progress = progress or NoProgress()
    method = model.method(scoring.method)
    if open_vocabulary and not isinstance(method, CNNRMethod):
        raise AnnotError("--open-vocabulary answers from CNN-R's regressed word vectors; use it with --method cnn-r")
    encoder = method.encoder()
    with progress.task("annotating", len(paths)) as advance:
        offset = 0
        for batch in iter_batches(list(paths), encoder, batch_size, workers=0 if len(paths) <= batch_size else None,
                                  upright=model.upright):
            names = [str(p) for p in paths[offset : offset + len(batch.ok)]]
            offset += len(batch.ok)
            failed = {name: why for name, ok, why in zip(names, batch.ok, batch.errors, strict=True) if not ok}
            good = [j for j, ok in enumerate(batch.ok) if ok]
            annotations: list[Annotation] = []
            if good:
                X = encoder.encode_sized(batch.sized)[good]
                kept = [names[j] for j in good]
                if open_vocabulary:
                    assert isinstance(method, CNNRMethod)
                    answers = method.open_vocabulary(X, scoring.n_tags)
                    annotations = [Annotation(name, tuple(TagScore(w, s) for w, s in words))
                                   for name, words in zip(kept, answers, strict=True)]
                else:
                    annotations = model.annotations(kept, model.predict(X, scoring), explain)
            advance(len(batch.ok))
            yield annotations, failed


def annotate_uploads(model: StoreModel, uploads: Sequence[tuple[str, bytes]], scoring: ScoringSettings, *,
                     explain: bool = False, max_pixels: int | None = None) -> list[Annotation | UnreadableImage]:
    """Annotate uploaded images (name, bytes) in one encoder batch; each is its annotation, or why it could not be
    read (the server batches concurrent requests through here)."""
    method = model.method(scoring.method)
    encoder = method.encoder()
    decoded: list[list[NDArray[np.uint8]] | UnreadableImage] = []
    for _, data in uploads:
        try:
            decoded.append(decode_bytes(data, encoder, model.upright, max_pixels))
        except UnreadableImage as exc:
            decoded.append(exc)
        except Exception as exc:  # noqa: BLE001 - any other decoder failure is an unreadable upload
            decoded.append(UnreadableImage(f"not a readable image ({type(exc).__name__})"))
    good = [j for j, d in enumerate(decoded) if not isinstance(d, UnreadableImage)]
    answers: dict[int, Annotation] = {}
    if good:
        pixels = [d for d in decoded if not isinstance(d, UnreadableImage)]
        stacked = [np.stack([p[k] for p in pixels]) for k in range(len(pixels[0]))]
        X = encoder.encode_sized(preprocess(encoder, stacked))
        found = model.annotations([uploads[j][0] for j in good], model.predict(X, scoring), explain)
        # each answer keeps its features, so that keeping the upload in the library does not encode it again
        answers = {j: replace(a, features=X[row]) for row, (j, a) in enumerate(zip(good, found, strict=True))}
    return [answers[j] if j in answers else typing.cast(UnreadableImage, d) for j, d in enumerate(decoded)]


def annotate_files(model: StoreModel, inputs: Sequence[Path], scoring: ScoringSettings | None = None, *,
                   explain: bool = False, open_vocabulary: bool = False, batch_size: int = 32,
                   progress: Progress | None = None) -> QueryResult:
    """Annotate image files with a loaded store (``scoring``: the store's by default); undecodable files are
    returned in ``failed``, not annotated."""
    result = QueryResult([])
    for batch, failed in iter_annotations(model, expand_inputs(inputs), scoring or model.settings.scoring,
                                          explain=explain, open_vocabulary=open_vocabulary, batch_size=batch_size,
                                          progress=progress):
        result.annotations.extend(batch)
        result.failed.update(failed)
    return result
