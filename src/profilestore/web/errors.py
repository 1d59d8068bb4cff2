"""The one place where errors become answers: each named error's HTTP status and headers, in
the format of the path it was raised on (Target's XML on Target's bulk and update paths, JSON
elsewhere, the shape Target's fetch API uses for its own errors)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from .. import errors
from ..store.base import StoreUnavailable
from . import xml

RETRY_AFTER_SECONDS = 5  # what a refusal for now (the store unavailable, no turn free) asks a caller to wait
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="profilestore"'}

STATUS: dict[type[errors.Refused], int] = {
    errors.Refused: 400,  # a refusal with no narrower name is the request's fault
    errors.BadRequest: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.InWrongState: 409,
    errors.IdempotencyKeyReused: 409,
    errors.NoLongerStored: 410,
    errors.TooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.RateLimited: 429,
    errors.Busy: 503,
}


def status_of(error: errors.Refused) -> int:
    """The status of the error's class, or of the nearest class it derives from."""
    return next(STATUS[kind] for kind in type(error).__mro__ if kind in STATUS)


def headers_of(error: errors.Refused) -> dict[str, str] | None:
    if isinstance(error, errors.Unauthenticated):
        return CHALLENGE
    if isinstance(error, (errors.RateLimited, errors.Busy)):
        return {"Retry-After": str(error.retry_after)}
    return None


def answer(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """A refused request in its path's format."""
    if request.url.path.startswith("/m2/"):
        return xml.refused(status, message, headers)
    return JSONResponse({"status": status, "message": message}, status, headers)


def install(app: FastAPI) -> None:
    """Answer every error a request can raise, in its path's format."""

    @app.exception_handler(errors.Refused)
    async def refused(request: Request, error: errors.Refused) -> Response:
        return answer(request, status_of(error), error.message, headers_of(error))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in error.errors())
        return answer(request, 400, f"Invalid request: {problems}")

    @app.exception_handler(StoreUnavailable)
    async def unavailable(request: Request, error: StoreUnavailable) -> Response:
        message = f"The store cannot be used right now: {error.cause}. Try again in a few seconds"
        return answer(request, 503, message, {"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> Response:
        # Starlette raises the error again after this answer, and uvicorn logs it with its trace.
        return answer(request, 500, "The service failed on this request; the error is in its log")
