"""The HTTP JSON API (``/v1``) and the web page (``/``) over one store, as a FastAPI app.

Every endpoint calls a method of :class:`annot.Store`, as the CLI does. The model is loaded once; when a writer (a
correction through the API, or ``annot add`` / ``annot annotate`` beside the server) changes the store, the next
request loads it again, after the requests that are reading the old one have finished (:class:`ModelGuard`); reads
never wait on a write in progress, since writers work on their own copy of the database until they publish it.
Concurrent annotate requests go through the encoder in batches (:class:`annot.serve.batching.Batcher`).

Safety: image endpoints take ids, never paths; uploads are capped in bytes and in pixels (checked on the image's
header, before it is decoded); writes (corrections, kept uploads) need the token when one is set, which the server
requires when it listens on an address other than loopback.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import typing
from collections.abc import Hashable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, File, Form, Header, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

import annot
from annot.api import Store
from annot.errors import AnnotError, Conflict, CorpusError, NotFound, StoreError
from annot.features.images import TooManyPixels, UnreadableImage
from annot.library.corrections import Correction
from annot.library.search import MODES, UnreadableUpload, UploadTooLarge
from annot.methods import Annotation
from annot.serve.security import Access, RequestGuard
from annot.settings import ScoringSettings, SettingsError
from annot.store import StoreBusy

STATIC = Path(__file__).parent / "static"
MAX_BYTES = 32 * 1024 * 1024  # an upload's size limit
MAX_PIXELS = 64_000_000  # an upload's pixel limit (a 64-megapixel photo; a decompression bomb is far above)


@dataclass(frozen=True)
class Limits:
    max_bytes: int = MAX_BYTES
    max_pixels: int = MAX_PIXELS


class ModelGuard:
    """Requests read the loaded model together; loading a changed store waits for them and holds new ones back.

    DuckDB opens a database file once per process, so the new model cannot be opened beside the old one: a load
    waits for the requests reading the old one. Every request's work is bounded (items, bytes, results), so that
    wait is short."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cond = threading.Condition()
        self._readers = 0
        self._loading = False

    @contextmanager
    def reading(self) -> Iterator[Store]:
        if self.store.stale():
            self._load()
        with self._cond:
            while self._loading:
                self._cond.wait()
            self._readers += 1
        try:
            yield self.store
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    def _load(self) -> None:
        with self._cond:
            if self._loading:
                return
            self._loading = True
            while self._readers:
                self._cond.wait()
        try:
            self.store.load()
        finally:
            with self._cond:
                self._loading = False
                self._cond.notify_all()


MAX_CORRECTIONS = 1000  # corrections in one request
MAX_TAG_CHARS = 200  # a tag's length in a request
MAX_QUERY_CHARS = 1000  # a search's words, all together
MAX_FILTERS = 32  # --require / --exclude tags of one search


class CorrectionIn(BaseModel):
    id: int = Field(description="The photo's id (from search or annotate).")
    tag: str = Field(min_length=1, max_length=MAX_TAG_CHARS)
    action: Literal["confirm", "reject", "add"] = Field(description="confirm, reject or add.")


class CorrectionsIn(BaseModel):
    corrections: list[CorrectionIn] = Field(min_length=1, max_length=MAX_CORRECTIONS,
                                            description=f"At most {MAX_CORRECTIONS} corrections a request.")


# HTTP statuses of the library's errors; a class not named answers as its nearest named base (AnnotError: 400)
ERROR_STATUS: dict[type[Exception], int] = {
    AnnotError: 400, NotFound: 404, Conflict: 409, StoreBusy: 409, SettingsError: 422, StoreError: 500,
    UnreadableUpload: 415, UploadTooLarge: 413,
}
PARAMETERS = {"scoring.n_tags": "n", "scoring.min_confidence": "min_confidence", "search.mode": "mode",
              "search.scope": "scope", "correction.action": "action"}  # a setting's name in a request


def _answer_with(status: int) -> Any:
    async def answer(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, SettingsError):  # in the request's words: its parameter, not the library's setting
            return _error(status, f"{PARAMETERS.get(exc.setting, exc.setting.split('.')[-1])} {exc.detail}")
        return _error(status, str(exc))

    return answer


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _tags(a: Annotation, explain: bool) -> list[dict[str, Any]]:
    out = []
    for t in a.tags:
        item: dict[str, Any] = {"tag": t.tag, "score": round(t.score, 6),
                                "confidence": None if t.confidence is None else round(t.confidence, 4)}
        if explain:
            item["voters"] = [{"id": v.image_id, "distance": round(v.distance, 4), "weight": round(v.weight, 6),
                               "thumbnail": f"/v1/images/{v.image_id}/thumbnail"} for v in t.evidence]
        out.append(item)
    return out


def create_app(store_root: Path, *, token: str | None = None, limits: Limits | None = None,
               max_batch: int = 16, access: Access | None = None) -> FastAPI:
    """The app over the store at ``store_root`` (opened read-only; writes go through the store's writer lock).
    ``access`` says which hosts and origins it answers (default: loopback only)."""
    from annot.serve.batching import Batcher

    limits = limits or Limits()
    access = replace(access or Access(), max_body_bytes=limits.max_bytes)
    store = Store(store_root, reload=False)
    store.load()  # a missing or damaged store fails here, before the server listens
    _warm_up(store, max_batch)
    guard = ModelGuard(store)

    def run_batch(key: Hashable, uploads: Sequence[tuple[str, bytes]]) -> list[Annotation | UnreadableImage]:
        scoring, explain = typing.cast(tuple[ScoringSettings, bool], key)
        with guard.reading() as s:
            return s.query_uploads(uploads, scoring, explain=explain, max_pixels=limits.max_pixels)

    batcher: Batcher[tuple[str, bytes], Annotation | UnreadableImage] = Batcher(run_batch, max_batch=max_batch)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        batcher.close()
        store.close()

    app = FastAPI(title="annot", version=annot.__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Automatic image annotation over an annot store: tags with confidence, search by "
                              "words or by example, corrections, evaluation runs.")
    app.state.store, app.state.batcher = store, batcher
    app.add_middleware(RequestGuard, access=access)  # Host, other sites, body size: before anything else runs

    # -- errors: one JSON shape, a status that says whose fault ---------------------------------------------------
    for error, status in ERROR_STATUS.items():  # keyed by class: the most specific class's status answers
        app.add_exception_handler(error, _answer_with(status))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(exc.errors()))

    def writer(authorization: Annotated[str | None, Header()] = None) -> None:
        if token is None:
            return
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise _Forbidden()

    @app.exception_handler(_Forbidden)
    async def forbidden(request: Request, exc: _Forbidden) -> JSONResponse:
        return _error(401, "this server takes writes with its token only (Authorization: Bearer TOKEN)")

    async def read_upload(image: UploadFile) -> bytes:
        data = await image.read(limits.max_bytes + 1)
        if len(data) > limits.max_bytes:
            raise _TooLarge(f"{image.filename or 'the upload'}: over {limits.max_bytes:,} bytes")
        if not data:
            raise UnreadableUpload(f"{image.filename or 'the upload'}: empty")
        return data

    @app.exception_handler(_TooLarge)
    async def too_large(request: Request, exc: _TooLarge) -> JSONResponse:
        return _error(413, str(exc))

    # -- the API ---------------------------------------------------------------------------------------------------
    @app.get("/v1/health")
    def health() -> dict[str, Any]:
        with guard.reading() as s:  # waits only while a writer's change is being loaded (requests are bounded)
            m = s.model().manifest
        return {"status": "ok", "version": annot.__version__, "store": str(store.root),
                "training_images": m.index.ntotal, "library_photos": m.collection.ntotal if m.collection else 0,
                "encoder": m.encoder.name, "method": m.settings.scoring.method, "updated_at": m.updated_at,
                "calibrated": m.calibration is not None, "batches": batcher.batches, "batched": batcher.items}

    @app.post("/v1/annotate")
    async def annotate_image(
        image: Annotated[UploadFile, File(description="The image to annotate.")],
        n: Annotated[int | None, Query(ge=1, le=50, description="Tags to return (default: the store's).")] = None,
        min_confidence: Annotated[str | None, Query(description="Every tag of the 10 best at or above this "
                                                                "confidence (or auto) instead of n.")] = None,
        explain: Annotated[bool, Query(description="Add the training photos that voted for each tag.")] = False,
        keep: Annotated[bool, Query(description="Also keep the photo in the store's library (a write: needs the "
                                                "token where one is set).")] = False,
        authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        if keep:
            writer(authorization)
        data = await read_upload(image)
        with guard.reading() as s:
            scoring = s.scoring(n_tags=n, min_confidence=min_confidence)
        name = image.filename or "upload"
        answer = await batcher((scoring, explain), (name, data))
        if isinstance(answer, TooManyPixels):
            raise UploadTooLarge(f"{name}: {answer}")
        if isinstance(answer, UnreadableImage):
            raise UnreadableUpload(f"{name}: {answer}")
        out: dict[str, Any] = {"image": name, "tags": _tags(answer, explain)}
        if keep:
            out["id"] = await _keep(name, data)
        return out

    async def _keep(name: str, data: bytes) -> int:
        """Save an upload under the store's uploads/ folder and annotate it into the library; its photo id."""
        from starlette.concurrency import run_in_threadpool

        suffix = Path(name).suffix.lower() if Path(name).suffix.lower() in {".jpg", ".jpeg", ".png", ".webp",
                                                                             ".heic", ".tif", ".tiff"} else ".jpg"
        folder = store.root / "uploads"
        path = folder / f"{hashlib.sha256(data).hexdigest()[:24]}{suffix}"

        def write() -> int:
            folder.mkdir(exist_ok=True)
            created = not path.exists()
            if created:
                tmp = path.with_suffix(".part")
                tmp.write_bytes(data)
                tmp.replace(path)
            try:
                with store.writer() as writing:
                    report = writing.annotate([path])
                if report.unreadable:
                    raise UnreadableUpload(f"{name}: {next(iter(report.unreadable.values()))}")
            except BaseException:
                if created:  # refused (the store busy, the photo unreadable): no file left behind
                    path.unlink(missing_ok=True)
                raise
            with guard.reading() as s:
                return s.photo_id(path)

        return await run_in_threadpool(write)

    @app.get("/v1/search")
    def search_words(
        q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS,
                                description="Words to search for, separated by spaces.")],
        mode: Annotated[str, Query(description=f"One of {', '.join(MODES)}.")] = "combined",
        require: Annotated[list[str] | None, Query(max_length=MAX_FILTERS,
                                                   description="A tag every result must have.")] = None,
        exclude: Annotated[list[str] | None, Query(max_length=MAX_FILTERS,
                                                   description="A tag no result may have.")] = None,
        folder: Annotated[str | None, Query(description="Only photos under this folder.")] = None,
        scope: Annotated[str, Query(description="all, library or training.")] = "all",
        n: Annotated[int, Query(ge=1, le=500)] = 20,
    ) -> dict[str, Any]:
        with guard.reading() as s:
            hits = s.search(q.split(), mode=mode, require=require or [], exclude=exclude or [], folder=folder, n=n,
                            scope=scope)
        return {"results": [_hit(h.to_dict()) for h in hits]}

    @app.post("/v1/search")
    async def search_like(
        image: Annotated[UploadFile, File(description="Find photos that look like this one.")],
        q: Annotated[str, Form(max_length=MAX_QUERY_CHARS, description="Words to search for as well.")] = "",
        require: Annotated[list[str] | None, Form(max_length=MAX_FILTERS)] = None,
        exclude: Annotated[list[str] | None, Form(max_length=MAX_FILTERS)] = None,
        folder: Annotated[str | None, Form()] = None,
        scope: Annotated[str, Form()] = "all",
        n: Annotated[int, Form(ge=1, le=500)] = 20,
    ) -> dict[str, Any]:
        from starlette.concurrency import run_in_threadpool

        data = await read_upload(image)

        def run() -> dict[str, Any]:
            with guard.reading() as s:
                hits = s.search(q.split(), like=data, require=require or [], exclude=exclude or [], folder=folder,
                                n=n, scope=scope, max_pixels=limits.max_pixels)
            return {"results": [_hit(h.to_dict()) for h in hits]}

        return await run_in_threadpool(run)

    @app.get("/v1/images/{image_id}")
    def image_info(image_id: int) -> dict[str, Any]:
        with guard.reading() as s:
            return {**s.photo(image_id).to_dict(), "thumbnail": f"/v1/images/{image_id}/thumbnail"}

    @app.get("/v1/images/{image_id}/thumbnail", response_class=Response)
    def thumbnail(image_id: int, size: Annotated[int, Query(ge=32, le=1024)] = 256) -> Response:
        with guard.reading() as s:
            try:
                data = s.thumbnail(image_id, size)
            except CorpusError as exc:
                return _error(404, str(exc))
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=300"})

    @app.get("/v1/tags")
    def vocabulary() -> dict[str, Any]:
        with guard.reading() as s:
            return {"tags": [w.to_dict() for w in s.vocabulary()]}

    @app.post("/v1/corrections", dependencies=[Depends(writer)])
    def correct(body: CorrectionsIn | CorrectionIn) -> dict[str, Any]:
        items = body.corrections if isinstance(body, CorrectionsIn) else [body]
        with store.writer() as writing:
            report = writing.correct([Correction(c.id, c.tag, c.action) for c in items], source="server")
        ids = list(dict.fromkeys(c.id for c in items))  # each photo once, read in one look-up
        with guard.reading() as s:
            shown = s.photo_tags(ids)
        return {**report.to_dict(), "photos": [{"id": i, "tags": [t.to_dict() for t in shown.get(i, [])]}
                                               for i in ids]}

    @app.get("/v1/runs")
    def runs() -> dict[str, Any]:
        with guard.reading() as s:
            return {"runs": [{**r.__dict__, "dataset": Path(r.dataset.split(":")[-1]).name} for r in s.runs()]}

    @app.get("/v1/runs/{run_id}/words")
    def run_words(run_id: int) -> dict[str, Any]:
        with guard.reading() as s:
            return {"run": run_id, "words": [w.to_dict() for w in s.run_words(run_id)]}

    # -- the web page and the OpenAPI explorer, both offline ---------------------------------------------------------
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/docs-assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="annot API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css", swagger_favicon_url="")

    return app


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


def _validation_message(errors: Sequence[Any]) -> str:
    """One line for a request that does not fit its schema. A body of either shape (one correction, or a list) is
    judged by the shape it tried: an error other than a missing field comes first; model names leave the place."""
    if not errors:
        return "invalid request"
    first = next((e for e in errors if e.get("type") != "missing"), errors[0])
    where = ".".join(str(p) for p in first.get("loc", ())
                     if p not in ("body", "query", "form") and not (isinstance(p, str) and p[:1].isupper()))
    return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))


def _hit(hit: dict[str, Any]) -> dict[str, Any]:
    return {**hit, "thumbnail": f"/v1/images/{hit['id']}/thumbnail"}


class _Forbidden(Exception):
    pass


class _TooLarge(Exception):
    pass


__all__ = ["Limits", "ModelGuard", "create_app"]
