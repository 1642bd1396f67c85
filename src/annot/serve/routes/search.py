"""``GET /v1/search`` (by words) and ``POST /v1/search`` (by an example photo, and words)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile
from starlette.concurrency import run_in_threadpool

from annot.library.search import MODES, Found
from annot.serve.errors import error
from annot.serve.state import State

router = APIRouter(tags=["search"])
MAX_QUERY_CHARS = 1000  # a search's words, all together
MAX_FILTERS = 32  # --require / --exclude tags of one search


def hits_of(found: Found) -> dict[str, Any]:
    hits = found.hits
    return {"scope": found.scope, "partial": found.partial, "left_out": found.left_out, "read_as": found.read_as,
            "unknown": list(found.unknown),
            "results": [{**h.to_dict(), "thumbnail": f"/v1/images/{h.image_id}/thumbnail"} for h in hits]}


@router.get("/search")
def search_words(
    state: State,
    q: Annotated[str, Query(max_length=MAX_QUERY_CHARS, description="Words to search for, separated by spaces.")
                 ] = "",
    like: Annotated[int | None, Query(description="Find photos that look like this photo (its id).")] = None,
    mode: Annotated[str, Query(description=f"One of {', '.join(MODES)}.")] = "combined",
    require: Annotated[list[str] | None, Query(max_length=MAX_FILTERS,
                                               description="A tag every result must have.")] = None,
    exclude: Annotated[list[str] | None, Query(max_length=MAX_FILTERS,
                                               description="A tag no result may have.")] = None,
    folder: Annotated[str | None, Query(description="Only photos under this folder.")] = None,
    scope: Annotated[str, Query(description="auto (the library's photos; the training images when it has none), "
                                            "library, training or all.")] = "auto",
    n: Annotated[int, Query(ge=1, le=500)] = 20,
    all_results: Annotated[bool, Query(alias="all", description="Also the photos whose only evidence is weaker "
                                                                  "than the calibrated cut.")] = False,
) -> dict[str, Any]:
    if not q.strip() and like is None:
        return error(422, "q: say what to search for: words, or like (a photo's id)")  # type: ignore[return-value]
    with state.guard.reading() as s:
        example = None if like is None else s.photo_file(like)
        return hits_of(s.find(q.split(), like=example, mode=mode, require=require or [], exclude=exclude or [],
                              folder=folder, n=n, scope=scope, all_results=all_results))


@router.post("/search")
async def search_like(
    state: State,
    image: Annotated[UploadFile, File(description="Find photos that look like this one.")],
    q: Annotated[str, Form(max_length=MAX_QUERY_CHARS, description="Words to search for as well.")] = "",
    require: Annotated[list[str] | None, Form(max_length=MAX_FILTERS)] = None,
    exclude: Annotated[list[str] | None, Form(max_length=MAX_FILTERS)] = None,
    folder: Annotated[str | None, Form()] = None,
    scope: Annotated[str, Form()] = "auto",
    n: Annotated[int, Form(ge=1, le=500)] = 20,
) -> dict[str, Any]:
    data = await state.read_upload(image)

    def run() -> dict[str, Any]:
        with state.guard.reading() as s:
            return hits_of(s.find(q.split(), like=data, require=require or [], exclude=exclude or [],
                                  folder=folder, n=n, scope=scope, max_pixels=state.limits.max_pixels))

    return await run_in_threadpool(run)
