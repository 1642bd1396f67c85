"""``GET /v1/review``: the library photos to review first, each with the tags to look at (answered with
``POST /v1/corrections``); ``POST /v1/rescore``: the library scored again with what the corrections taught."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from annot.serve.state import State, require_writer

router = APIRouter(tags=["review"])
MAX_ITEMS = 200  # photos one request may ask for


@router.get("/review")
def review(state: State, n: Annotated[int, Query(ge=1, le=MAX_ITEMS)] = 20) -> dict[str, Any]:
    with state.guard.reading() as s:
        return {"photos": [item.to_dict() for item in s.review(n)]}


@router.post("/rescore", dependencies=[Depends(require_writer)])
def rescore(state: State) -> dict[str, Any]:
    """Score the library's photos again from their stored features, with what the corrections since taught (as
    ``annot annotate`` with no folder): how many photos were scored and how many of them changed tags."""
    with state.store.writer() as writing:
        report = writing.annotate([])
    return {"rescored": report.rescored, "tags_changed": report.retagged, "photos": report.total,
            "seconds": round(report.rescore_seconds, 2)}
