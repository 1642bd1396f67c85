"""``GET /v1/health``: what the server serves, and how its batches go."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

import annot
from annot.serve.state import State

router = APIRouter(tags=["health"])


@router.get("/health")
def health(state: State) -> dict[str, Any]:
    with state.guard.reading() as s:  # waits only while a writer's change is being loaded (requests are bounded)
        m = s.model().manifest
    return {"status": "ok", "version": annot.__version__, "store": str(state.store.root),
            "training_images": m.index.ntotal, "library_photos": m.collection.ntotal if m.collection else 0,
            "encoder": m.encoder.name, "method": m.settings.scoring.method, "updated_at": m.updated_at,
            "calibrated": m.calibration is not None, "batches": state.batcher.batches,
            "batched": state.batcher.items}
