"""``GET /v1/photos`` (the library page by page: by folder, month, tag, not reviewed; in an order) and
``GET /v1/facets`` (the counts of each)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from annot.library.browse import MAX_PAGE, ORDERS
from annot.serve.state import State

router = APIRouter(tags=["photos"])
MAX_OFFSET = 100_000_000  # beyond any library


@router.get("/photos")
def photos(
    state: State,
    folder: Annotated[str | None, Query(max_length=4096, description="Only photos under this folder.")] = None,
    date: Annotated[str | None, Query(pattern=r"^\d{4}(-\d{2})?$", description="Only photos of this year "
                                                                                 "(YYYY) or month (YYYY-MM).")] = None,
    tag: Annotated[str | None, Query(max_length=200, description="Only photos showing this tag.")] = None,
    unreviewed: Annotated[bool, Query(description="Only photos without a correction.")] = False,
    order: Annotated[str, Query(description=f"One of {', '.join(ORDERS)}.")] = "newest",
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 60,
) -> dict[str, Any]:
    with state.guard.reading() as s:
        page = s.browse(folder=folder, date=date, tag=tag, unreviewed=unreviewed, order=order, offset=offset,
                        limit=limit)
    out = page.to_dict()
    for photo in out["photos"]:
        photo["thumbnail"] = f"/v1/images/{photo['id']}/thumbnail"
    return out


@router.get("/facets")
def facets(state: State) -> dict[str, Any]:
    with state.guard.reading() as s:
        return s.facets()
