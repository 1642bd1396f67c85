"""``GET /v1/tags``: the vocabulary, each word with its training images and library photos."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from annot.serve.state import State

router = APIRouter(tags=["tags"])


@router.get("/tags")
def vocabulary(state: State) -> dict[str, Any]:
    state.store.publish_corrections()  # words that corrections added are in the vocabulary once published
    with state.guard.reading() as s:
        return {"tags": [w.to_dict() for w in s.vocabulary()]}
