"""``GET /v1/review``: the library photos to review first, each with the tags to look at (answered with
``POST /v1/corrections``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from annot.serve.state import State

router = APIRouter(tags=["review"])
MAX_ITEMS = 200  # photos one request may ask for


@router.get("/review")
def review(state: State, n: Annotated[int, Query(ge=1, le=MAX_ITEMS)] = 20) -> dict[str, Any]:
    with state.guard.reading() as s:
        return {"photos": [item.to_dict() for item in s.review(n)]}
