"""The HTTP JSON API (``/v1``) and the web page (``/``) over one store, as a FastAPI app.

Every endpoint calls a method of :class:`annot.Store`, as the CLI does, through one router per resource
(:mod:`annot.serve.routes`) and one dependency for what they share (:mod:`annot.serve.state`). The model is loaded
once; when a writer (a correction through the API, or ``annot add`` / ``annot annotate`` beside the server) changes
the store, the next request loads it again, after the requests that are reading the old one have finished
(:class:`annot.serve.state.ModelGuard`); reads never wait on a write in progress, since writers work on their own
copy of the database until they publish it. Concurrent annotate requests go through the encoder in batches
(:class:`annot.serve.batching.Batcher`).

Safety is middleware (:mod:`annot.serve.security`): ``Host`` and cross-site checks and body limits before any route
runs. Image endpoints take ids, never paths; uploads are capped in bytes and in pixels (checked on the image's
header, before it is decoded); writes (corrections, kept uploads) need the token when one is set, which the server
requires when it listens on an address other than loopback.
"""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator, Hashable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

import annot
from annot.api import Store
from annot.features.images import UnreadableImage
from annot.methods import Annotation
from annot.serve.errors import add_error_handlers
from annot.serve.routes import ROUTERS
from annot.serve.security import Access, RequestGuard
from annot.serve.state import MAX_BYTES, MAX_PIXELS, Limits, ModelGuard, ServerState
from annot.settings import ScoringSettings

STATIC = Path(__file__).parent / "static"


def create_app(store_root: Path, *, token: str | None = None, limits: Limits | None = None,
               max_batch: int = 16, access: Access | None = None) -> FastAPI:
    """The app over the store at ``store_root`` (opened read-only; writes go through the store's writer lock).
    ``access`` says which hosts and origins it answers (default: loopback only)."""
    from annot.serve.batching import Batcher

    limits = limits or Limits()
    access = replace(access or Access(), max_body_bytes=limits.max_bytes)
    store = Store(store_root, reload=False)
    store.load()  # a missing or damaged store fails here, before the server listens
    store.keep_corrections_open()
    _warm_up(store, max_batch)
    guard = ModelGuard(store)

    def run_batch(key: Hashable, uploads: Sequence[tuple[str, bytes]]) -> list[Annotation | UnreadableImage]:
        scoring, explain = typing.cast(tuple[ScoringSettings, bool], key)
        with guard.reading() as s:
            return s.query_uploads(uploads, scoring, explain=explain, max_pixels=limits.max_pixels)

    batcher: Batcher[tuple[str, bytes], Annotation | UnreadableImage] = Batcher(run_batch, max_batch=max_batch)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        batcher.close()
        store.close()

    app = FastAPI(title="annot", version=annot.__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Automatic image annotation over an annot store: tags with confidence, search by "
                              "words or by example, corrections, evaluation runs.")
    app.state.annot = ServerState(store, guard, batcher, limits, token)
    app.state.store, app.state.batcher = store, batcher
    app.add_middleware(RequestGuard, access=access)  # Host, other sites, body size: before anything else runs
    add_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router, prefix="/v1")
    _mount_page(app)
    return app


# the page runs its own script only: text from data can never run as script, even if it reached markup
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def _mount_page(app: FastAPI) -> None:
    """The web page and the OpenAPI explorer, both offline."""
    import importlib.util

    spec = importlib.util.find_spec("fastapi_offline")  # its Swagger UI 5 bundle reads OpenAPI 3.1 (only the files)
    assert spec is not None and spec.submodule_search_locations
    swagger = Path(next(iter(spec.submodule_search_locations))) / "static"
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/docs-assets", StaticFiles(directory=str(swagger)), name="docs-assets")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers={"Content-Security-Policy": PAGE_CSP})

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="annot API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon.png")


def _warm_up(store: Store, batch: int) -> None:
    """Load the encoder, the scoring method and the word vectors now, not on the first requests.

    The warm-up batch is as large as the batcher's largest, so that the encoder's working memory for it is taken at
    start and the server's memory stays flat under load."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 140, 160)).save(buffer, "JPEG")
    store.query_uploads([(f"warm-up {i}", buffer.getvalue()) for i in range(batch)])
    model = store.model()
    if model.vocabulary:
        store.search([model.vocabulary[0]], mode="space", n=1)


__all__ = ["MAX_BYTES", "MAX_PIXELS", "Limits", "ModelGuard", "create_app"]
