"""``GET /v1/images/{id}`` (a photo, its file's details and tags), its thumbnail, a larger rendition, its original
file, and the training photos that voted for its tags: photos by id only, never by path."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from annot.errors import CorpusError, NotFound
from annot.library.browse import file_details
from annot.serve.errors import error
from annot.serve.routes.annotate import tags_of
from annot.serve.state import State

router = APIRouter(tags=["images"])
MAX_RENDITION = 2048  # pixels on the longer side


@router.get("/images/{image_id}")
def image_info(state: State, image_id: int) -> dict[str, Any]:
    with state.guard.reading() as s:
        photo = s.photo(image_id).to_dict()
    path = Path(photo["path"])
    return {**photo, "folder": str(path.parent), "name": path.name, **file_details(path),
            "thumbnail": f"/v1/images/{image_id}/thumbnail", "rendition": f"/v1/images/{image_id}/rendition",
            "original": f"/v1/images/{image_id}/original"}


def _jpeg(state: State, image_id: int, size: int) -> Response:
    with state.guard.reading() as s:
        try:
            data = s.thumbnail(image_id, size)
        except CorpusError as exc:
            return error(404, str(exc))
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=300"})


@router.get("/images/{image_id}/thumbnail", response_class=Response)
def thumbnail(state: State, image_id: int, size: Annotated[int, Query(ge=32, le=1024)] = 256) -> Response:
    return _jpeg(state, image_id, size)


@router.get("/images/{image_id}/rendition", response_class=Response)
def rendition(state: State, image_id: int,
              size: Annotated[int, Query(ge=32, le=MAX_RENDITION, description="The longer side's pixels at most (a "
                                                                                "photo is never enlarged).")] = 1600,
              ) -> Response:
    return _jpeg(state, image_id, size)


@router.get("/images/{image_id}/original", response_class=Response)
def original(state: State, image_id: int) -> Response:
    with state.guard.reading() as s:
        path = s.photo_file(image_id)
    if not path.is_file():
        return error(404, f"photo id {image_id}: its file {path} cannot be read")
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=kind, filename=path.name, content_disposition_type="inline")


@router.get("/images/{image_id}/explain")
async def explain(state: State, image_id: int) -> dict[str, Any]:
    """The photo's tags as the store scores it now, each with the training photos that voted for it."""
    def run() -> dict[str, Any]:
        with state.guard.reading() as s:
            path = s.photo_file(image_id)
            try:
                answer = s.query([path], explain=True)[0]
            except CorpusError as exc:
                raise NotFound(f"photo id {image_id}: {exc}") from exc
        return {"id": image_id, "tags": tags_of(answer, True)}

    return await run_in_threadpool(run)
