"""Errors as the Dynamic Sessions data plane answers them: Azure.Core ErrorResponse + x-ms-error-code."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from telemetry.context import record_failure

_HTTP_CODES = {404: "NotFound", 405: "MethodNotAllowed", 415: "UnsupportedMediaType"}


class AzureError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        target: str | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.target = status, code, message, target
        self.details = details or []
        self.headers = headers or {}


def error_object(code: str, message: str, target: str | None = None,
                 details: list[dict[str, Any]] | None = None, inner: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "target": target, "details": details or [], "innererror": inner or {}}


def error_response(error: AzureError) -> JSONResponse:
    body = {"error": error_object(error.code, error.message, error.target, error.details)}
    return JSONResponse(body, status_code=error.status, headers={"x-ms-error-code": error.code, **error.headers})


def _validation_error(exc: RequestValidationError) -> AzureError:
    details = []
    for item in exc.errors():
        location = [str(part) for part in item.get("loc", ())]
        source = location[0] if location else "body"
        field = ".".join(location[1:]) or source
        message = f"'{field}': {item.get('msg', 'invalid value')}"
        code = "InvalidRequestBody" if source == "body" else "InvalidParameter"
        details.append(error_object(code, message, field))
    first = details[0] if details else error_object("InvalidRequestBody", "The request is not valid.", "body")
    message = "; ".join(detail["message"] for detail in details) or first["message"]
    return AzureError(400, first["code"], f"The request is not valid: {message}", first["target"], details)


def install_azure_error_handlers(app: FastAPI) -> None:
    """Replace the service's JSON error handlers: every error this app answers has the Azure shape."""

    @app.exception_handler(AzureError)
    async def _azure(_: Request, exc: AzureError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "BadRequest" if exc.status_code < 500 else "InternalServerError")
        return error_response(AzureError(exc.status_code, code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        record_failure(exc)
        message = f"{type(exc).__name__}: the service could not process the request."
        return error_response(AzureError(500, "InternalServerError", message))
