"""``GET /v1/review``: the library photos to review first, each with the tags to look at (answered with
``POST /v1/corrections``); ``POST /v1/rescore``: the library scored again with what the corrections taught."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from annot.serve.state import State, require_writer

router = APIRouter(tags=["review"])
MAX_ITEMS = 200  # photos one request may ask for
RESCORE_LIMIT = 20_000  # photos one re-scoring request scores (a few seconds); the page asks again for the rest


@router.get("/review")
def review(state: State, n: Annotated[int, Query(ge=1, le=MAX_ITEMS)] = 20) -> dict[str, Any]:
    with state.guard.reading() as s:
        return {"photos": [item.to_dict() for item in s.review(n)]}


@router.post("/rescore", dependencies=[Depends(require_writer)])
def rescore(state: State) -> dict[str, Any]:
    """Score the library's photos again from their stored features, with what the corrections since taught (as
    ``annot annotate`` with no folder), at most ``RESCORE_LIMIT`` a request: how many photos were scored, how many
    of them changed tags, and how many are ``left`` for the next request."""
    with state.store.writer() as writing:
        report = writing.annotate([], rescore_limit=RESCORE_LIMIT)
    return {"rescored": report.rescored, "tags_changed": report.retagged, "left": report.stale_left,
            "photos": report.total, "seconds": round(report.rescore_seconds, 2)}
