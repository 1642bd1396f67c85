"""``POST /v1/corrections``: confirm, reject or add tags of photos (at most 1,000 a request); the answer shows each
corrected photo's tags as they are now. The server keeps its writer open while corrections come and publishes them
a moment after the last (:mod:`annot.library.session`): its own answers show them at once."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from annot.library.corrections import Correction
from annot.serve.state import State, require_writer

router = APIRouter(tags=["corrections"])
MAX_CORRECTIONS = 1000  # corrections in one request
MAX_TAG_CHARS = 200  # a tag's length in a request


class CorrectionIn(BaseModel):
    id: int = Field(description="The photo's id (from search or annotate).")
    tag: str = Field(min_length=1, max_length=MAX_TAG_CHARS)
    action: Literal["confirm", "reject", "add", "clear"] = Field(
        description="confirm, reject or add; clear forgets the corrections of a library photo's tag (undo).")


class CorrectionsIn(BaseModel):
    corrections: list[CorrectionIn] = Field(min_length=1, max_length=MAX_CORRECTIONS,
                                            description=f"At most {MAX_CORRECTIONS} corrections a request.")


@router.post("/corrections", dependencies=[Depends(require_writer)])
def correct(state: State, body: CorrectionsIn | CorrectionIn) -> dict[str, Any]:
    items = body.corrections if isinstance(body, CorrectionsIn) else [body]
    ids = list(dict.fromkeys(c.id for c in items))  # each photo once, read in one look-up
    report = state.store.correct([Correction(c.id, c.tag, c.action) for c in items], source="server")
    shown = state.store.photo_tags(ids)  # as written: the served model is loaded again once they are published
    return {**report.to_dict(), "photos": [{"id": i, "tags": [t.to_dict() for t in shown.get(i, [])]} for i in ids]}
