"""One JSON shape for every error, and its HTTP status by the error's class (never by its message)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from annot.errors import AnnotError, Conflict, NotFound, StoreError
from annot.library.search import UnreadableUpload, UploadTooLarge
from annot.serve.state import TokenRequired, UploadOverLimit
from annot.settings import SettingsError
from annot.store import StoreBusy

# HTTP statuses of the library's errors; a class not named answers as its nearest named base (AnnotError: 400)
ERROR_STATUS: dict[type[Exception], int] = {
    AnnotError: 400, NotFound: 404, Conflict: 409, StoreBusy: 409, SettingsError: 422, StoreError: 500,
    UnreadableUpload: 415, UploadTooLarge: 413, UploadOverLimit: 413,
}
PARAMETERS = {"scoring.n_tags": "n", "scoring.min_confidence": "min_confidence", "search.mode": "mode",
              "search.scope": "scope", "correction.action": "action", "browse.order": "order"}  # a setting's name in a request
TOKEN_REQUIRED = "this server takes writes with its token only (Authorization: Bearer TOKEN)"


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _answer_with(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def answer(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, SettingsError):  # in the request's words: its parameter, not the library's setting
            return error(status, f"{PARAMETERS.get(exc.setting, exc.setting.split('.')[-1])} {exc.detail}")
        return error(status, str(exc))

    return answer


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return error(422, validation_message(errors))


async def _token_required(request: Request, exc: Exception) -> JSONResponse:
    return error(401, TOKEN_REQUIRED)


def add_error_handlers(app: FastAPI) -> None:
    for kind, status in ERROR_STATUS.items():  # keyed by class: the most specific class's status answers
        app.add_exception_handler(kind, _answer_with(status))
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(TokenRequired, _token_required)


def validation_message(errors: Sequence[Any]) -> str:
    """One line for a request that does not fit its schema. A body of either shape (one correction, or a list) is
    judged by the shape it tried: an error other than a missing field comes first; model names leave the place."""
    if not errors:
        return "invalid request"
    first = next((e for e in errors if e.get("type") != "missing"), errors[0])
    where = ".".join(str(p) for p in first.get("loc", ())
                     if p not in ("body", "query", "form") and not (isinstance(p, str) and p[:1].isupper()))
    return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))


__all__ = ["ERROR_STATUS", "add_error_handlers", "error", "validation_message"]
