"""``GET /v1/runs`` and ``GET /v1/runs/{id}/words``: evaluation runs and their per-word metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter

from annot.serve.state import State

router = APIRouter(tags=["runs"])


@router.get("/runs")
def runs(state: State) -> dict[str, Any]:
    with state.guard.reading() as s:
        return {"runs": [{**r.__dict__, "dataset": Path(r.dataset.split(":")[-1]).name} for r in s.runs()]}


@router.get("/runs/{run_id}/words")
def run_words(state: State, run_id: int) -> dict[str, Any]:
    with state.guard.reading() as s:
        return {"run": run_id, "words": [w.to_dict() for w in s.run_words(run_id)]}
