"""Errors that cross a hop, and the JSON error bodies every service answers with."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from telemetry.context import record_failure

# 4xx of a next hop that describe the request the caller sent (a 401/403 would be this service's own
# misconfiguration toward the next hop: a 502).
PASSED_THROUGH = (400, 404, 409, 413, 422)


class HopError(Exception):
    """A call to the next hop failed; ``hop`` names the service that failed."""

    def __init__(self, hop: str, message: str, status_code: int | None = None) -> None:
        super().__init__(f"{hop}: {message}")
        self.hop = hop
        self.reason = message
        self.status_code = status_code


class ServiceError(Exception):
    """An error this service answers with a given status and a problem body."""

    def __init__(self, status_code: int, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.field = field


def problem(status: int, title: str, detail: str, errors: list[dict[str, Any]] | None = None,
            failed_hop: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    if failed_hop:
        body["failed_hop"] = failed_hop  # the caller's HopClient names this hop, not the one it called
    return JSONResponse(body, status_code=status)


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":  # loc is ("body", <character position>)
            position = error.get("loc", ("body", "?"))[-1]
            errors.append({"field": "body", "message": f"JSON decode error at character {position}"})
            continue
        location = [str(part) for part in error.get("loc", ()) if part != "body"]
        errors.append({"field": ".".join(location) or "body", "message": error.get("msg", "invalid")})
    return errors


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc)
        fields = ", ".join(e["field"] for e in errors)
        return problem(400, "Invalid request", f"Invalid or missing fields: {fields}", errors)

    @app.exception_handler(ServiceError)
    async def _service(_: Request, exc: ServiceError) -> JSONResponse:
        errors = [{"field": exc.field, "message": exc.detail}] if exc.field else None
        return problem(exc.status_code, "Request failed", exc.detail, errors)

    @app.exception_handler(HopError)
    async def _next_hop(_: Request, exc: HopError) -> JSONResponse:
        if exc.status_code in PASSED_THROUGH:  # the next hop refused what the caller sent: the caller's 4xx
            return problem(exc.status_code, "Request refused by the next hop", str(exc))
        # A hop behind this one failed: 502 naming it (never a bare 500 that would blame this service).
        record_failure(exc, hop=exc.hop)
        return problem(502, "Next hop failed", str(exc), failed_hop=exc.hop)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, "Request failed", str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Starlette raises the exception on after this answer: the FastAPI instrumentation records it on
        # the server span then, once.
        return problem(500, "Internal error", f"{type(exc).__name__}: the service could not process the request")
