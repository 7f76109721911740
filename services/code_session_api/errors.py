"""Errors of the custom-container face: ``{"detail": ...}`` bodies, as FastAPI's HTTPException gives."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


class DetailError(Exception):
    def __init__(self, status: int, detail: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(str(detail))
        self.status, self.detail, self.headers = status, detail, headers


def install_detail_errors(app: FastAPI) -> None:
    @app.exception_handler(DetailError)
    async def _detail(_: Request, exc: DetailError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)
