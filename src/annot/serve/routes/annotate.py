"""``POST /v1/annotate``: tags for an uploaded photo (with the training photos that voted), kept in the library when
asked."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Header, Query, UploadFile
from starlette.concurrency import run_in_threadpool

from annot.errors import Conflict
from annot.features.images import TooManyPixels, UnreadableImage
from annot.library.search import UnreadableUpload, UploadTooLarge
from annot.methods import Annotation
from annot.methods.cnnr.method import CNNRMethod
from annot.serve.state import ServerState, State

router = APIRouter(tags=["annotate"])
KEPT_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".tif", ".tiff"}


def tags_of(a: Annotation, explain: bool) -> list[dict[str, Any]]:
    out = []
    for t in a.tags:
        item: dict[str, Any] = {"tag": t.tag, "score": round(t.score, 6),
                                "confidence": None if t.confidence is None else round(t.confidence, 4)}
        if explain:
            item["voters"] = [{"id": v.image_id, "distance": round(v.distance, 4), "weight": round(v.weight, 6),
                               "thumbnail": f"/v1/images/{v.image_id}/thumbnail"} for v in t.evidence]
        out.append(item)
    return out


@router.post("/annotate")
async def annotate_image(
    state: State,
    image: Annotated[UploadFile, File(description="The image to annotate.")],
    n: Annotated[int | None, Query(ge=1, le=50, description="Tags to return (default: the store's).")] = None,
    min_confidence: Annotated[str | None, Query(description="Every tag of the 10 best at or above this "
                                                            "confidence (or auto) instead of n.")] = None,
    explain: Annotated[bool, Query(description="Add the training photos that voted for each tag.")] = False,
    keep: Annotated[bool, Query(description="Also keep the photo in the store's library (a write: needs the "
                                            "token where one is set).")] = False,
    authorization: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    if keep:
        state.check_writer(authorization)
    data = await state.read_upload(image)
    with state.guard.reading() as s:
        scoring = s.scoring(n_tags=n, min_confidence=min_confidence)
    name = image.filename or "upload"
    answer = await state.batcher((scoring, explain), (name, data))
    if isinstance(answer, TooManyPixels):
        raise UploadTooLarge(f"{name}: {answer}")
    if isinstance(answer, UnreadableImage):
        raise UnreadableUpload(f"{name}: {answer}")
    out: dict[str, Any] = {"image": name, "tags": tags_of(answer, explain)}
    if keep:
        with state.guard.reading() as s:  # the answer's features are the store's when its encoder made them
            own = not isinstance(s.model().method(scoring.method), CNNRMethod)
        out["id"], out["path"] = await run_in_threadpool(keep_upload, state, name, data,
                                                         answer.features if own else None)
    return out


def kept_name(name: str) -> str:
    """An upload's file name as it is kept: its last part, without control characters or a leading dot, at most
    100 characters before a photo suffix (``.jpg`` where it has none)."""
    base = "".join(c for c in name.replace("\\", "/").rsplit("/", 1)[-1] if c.isprintable()).strip().lstrip(".")
    stem, suffix = (base.rsplit(".", 1)[0], "." + base.rsplit(".", 1)[1].lower()) if "." in base else (base, "")
    if suffix not in KEPT_SUFFIXES:
        stem, suffix = base, ".jpg"
    return (stem.strip()[:100] or "upload") + suffix


def _place(folder: Path, name: str, data: bytes) -> tuple[Path, bool]:
    """Where an upload is kept: its own name, or ``name-2``, ``name-3``... beside a different photo of that name; the
    same photo uploaded again is the same file. Whether the file was written now."""
    wanted = kept_name(name)
    stem, suffix = wanted[: -len(Path(wanted).suffix)], Path(wanted).suffix
    for n in range(1, 10_000):
        path = folder / (wanted if n == 1 else f"{stem}-{n}{suffix}")
        try:
            with open(path, "xb") as fh:  # claimed: no other request writes it
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            return path, True
        except FileExistsError:
            if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
                return path, False
    raise Conflict(f"{name}: too many uploads of that name")


def keep_upload(state: ServerState, name: str, data: bytes, features: Any = None) -> tuple[int, str]:
    """Save an upload under the store's uploads/ folder by its own name and annotate it into the library (from
    ``features``, the answer's, where given: not decoded or encoded again); its photo id and path. A refused one (the
    store busy, the photo unreadable) leaves no file behind."""
    with state.guard.reading() as s:
        known = s.photo_with_content(hashlib.sha256(data).hexdigest())
    if known is not None:  # the same photo, kept before (or a library photo): the same photo
        return known
    folder = state.store.root / "uploads"
    folder.mkdir(exist_ok=True)
    path, created = _place(folder, name, data)
    try:
        with state.store.writer() as writing:
            report = writing.annotate([path], features=None if features is None else {path: features})
        if report.unreadable:
            raise UnreadableUpload(f"{name}: {next(iter(report.unreadable.values()))}")
    except BaseException:
        if created:
            path.unlink(missing_ok=True)
        raise
    with state.guard.reading() as s:
        return s.photo_id(path), str(path)
