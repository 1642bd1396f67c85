"""Annotating image files: decode, encode with the store's encoder, project, search, score."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from annot.errors import AnnotError, CorpusError
from annot.features.images import iter_batches
from annot.progress import NoProgress, Progress
from annot.retrieval.model import CNNR_METHOD, Annotation, AnnotationModel, TagScore

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


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
            found = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise CorpusError(f"{item}: directory holds no images")
            paths.extend(found)
        elif item.exists():
            paths.append(item)
        else:
            raise CorpusError(f"{item}: no such file")
    return paths


def annotate_files(
    model: AnnotationModel,
    inputs: Sequence[Path],
    *,
    method: str | None = None,
    explain: bool = False,
    open_vocabulary: bool = False,
    batch_size: int = 32,
    progress: Progress | None = None,
    **given: Any,
) -> QueryResult:
    """Annotate image files with a loaded store; undecodable files are returned in ``failed``, not annotated.
    ``given`` are annotation settings (``AnnotationModel.settings``) that override the store's."""
    progress = progress or NoProgress()
    paths = expand_inputs(inputs)
    method = model.settings(method)["method"]
    if open_vocabulary and method != CNNR_METHOD:
        raise AnnotError("--open-vocabulary answers from CNN-R's regressed word vectors; use it with --method cnn-r")
    encoder = model.encoder_for(method)
    features, names, failed = [], [], {}
    with progress.task("encoding", len(paths)) as advance:
        offset = 0
        for batch in iter_batches(paths, encoder, batch_size, workers=0 if len(paths) <= batch_size else None):
            x = encoder.encode_sized(batch.sized)
            for j, ok in enumerate(batch.ok):
                path = paths[offset + j]
                if ok:
                    features.append(x[j])
                    names.append(str(path))
                else:
                    failed[str(path)] = f"not a readable image ({batch.errors[j]})"
            offset += len(batch.ok)
            advance(len(batch.ok))
    if not features:
        return QueryResult([], failed)
    X = np.stack(features)
    if open_vocabulary:
        n = model.settings(method, **given)["n_tags"]
        answers = model.open_vocabulary(X, n)
        return QueryResult([Annotation(name, tuple(TagScore(w, s) for w, s in words))
                            for name, words in zip(names, answers, strict=True)], failed)
    predictions = model.predict(X, method, **given)
    return QueryResult(model.annotations(names, predictions, explain), failed)
