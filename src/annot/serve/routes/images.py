"""``GET /v1/images/{id}`` and its thumbnail: photos by id only, never by path."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from annot.errors import CorpusError
from annot.serve.errors import error
from annot.serve.state import State

router = APIRouter(tags=["images"])


@router.get("/images/{image_id}")
def image_info(state: State, image_id: int) -> dict[str, Any]:
    with state.guard.reading() as s:
        return {**s.photo(image_id).to_dict(), "thumbnail": f"/v1/images/{image_id}/thumbnail"}


@router.get("/images/{image_id}/thumbnail", response_class=Response)
def thumbnail(state: State, image_id: int, size: Annotated[int, Query(ge=32, le=1024)] = 256) -> Response:
    with state.guard.reading() as s:
        try:
            data = s.thumbnail(image_id, size)
        except CorpusError as exc:
            return error(404, str(exc))
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=300"})
