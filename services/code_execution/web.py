"""HTTP-edge pieces both faces share: streamed uploads, identifier redaction on server spans, /status."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import StreamingResponse
from opentelemetry import trace
from python_multipart.exceptions import ParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from services.code_execution.config import ExecutorConfig
from services.code_execution.executor import Executor
from services.code_execution.files import (
    FileEntry,
    FileMissingError,
    InvalidPathError,
    SessionFiles,
    Upload,
    split_file,
)
from services.common.service import create_service
from services.common.settings import Settings
from telemetry import conventions as c
from telemetry.context import hashed

MULTIPART_SLACK = 64 * 1024  # headers and boundaries around the file part


class UploadTooLargeError(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"The file is larger than the {limit // (1024 * 1024)} MB upload limit.")


class UploadFormatError(ValueError):
    """Not multipart/form-data, or no part named ``file`` with a file name."""


class _FilePartReceiver:
    """Callbacks for the streaming multipart parser: the ``file`` part goes straight to disk."""

    def __init__(self, files: SessionFiles, directory: str | None, limit: int) -> None:
        self.files, self.directory, self.limit = files, directory, limit
        self.upload: Upload | None = None
        self.done: Upload | None = None
        self._writing = False
        self._header_field = b""
        self._header_value = b""
        self._disposition = b""

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._append("_header_field", data[start:end]),
            "on_header_value": lambda data, start, end: self._append("_header_value", data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _append(self, attribute: str, data: bytes) -> None:
        setattr(self, attribute, getattr(self, attribute) + data)

    def _part_begin(self) -> None:
        self._disposition = b""
        self._writing = False

    def _header_end(self) -> None:
        if self._header_field.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_field = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        filename = options.get(b"filename")
        if options.get(b"name") == b"file" and filename is not None and self.done is None and self.upload is None:
            directory, name = split_file(self.directory, filename.decode("utf-8", "replace"), "file")
            try:
                self.upload = self.files.begin_upload(directory, name)
            except FileMissingError as error:  # a file stands where the folder should be
                raise InvalidPathError(f"'{'/'.join(directory)}' is not a folder.", "path") from error
            self._writing = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._writing and self.upload is not None:
            if self.upload.size + (end - start) > self.limit:
                raise UploadTooLargeError(self.limit)
            self.upload.write(data[start:end])

    def _part_end(self) -> None:
        if self._writing:
            self.done, self.upload, self._writing = self.upload, None, False


async def receive_upload(request: Request, files: SessionFiles, directory: str | None, limit: int) -> FileEntry:
    """Stream the multipart ``file`` part into the session, never holding it in memory.

    The size is checked as it arrives (and up front from Content-Length): over ``limit`` -> 413.
    Chunks are small and written to the page cache, so the loop is not held up for long.
    """
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise UploadFormatError("The upload must be multipart/form-data with a part named 'file'.")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + MULTIPART_SLACK:
        raise UploadTooLargeError(limit)
    receiver = _FilePartReceiver(files, directory, limit)
    parser = MultipartParser(boundary, receiver.callbacks())
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except BaseException as error:
        for upload in (receiver.upload, receiver.done):
            if upload is not None:
                upload.abort()
        if isinstance(error, ParseError):
            raise UploadFormatError(f"The multipart body is malformed: {error}") from error
        raise
    if receiver.done is None:
        if receiver.upload is not None:
            receiver.upload.abort()
        raise UploadFormatError("The upload must be multipart/form-data with a part named 'file'.")
    return receiver.done.commit()


class RedactIdentifierMiddleware:
    """Session identifiers are secrets: replace the one in the server span's ``url.query`` by its hash."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and b"identifier=" in scope.get("query_string", b""):
            span = trace.get_current_span()
            if span.is_recording():
                pairs = urllib.parse.parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
                identifier = next((value for key, value in pairs if key == "identifier"), "")
                redacted = [(key, hashed(value) if key == "identifier" else value) for key, value in pairs]
                span.set_attribute("url.query", urllib.parse.urlencode(redacted))
                if identifier:
                    span.set_attribute(c.ATTR_CODE_SESSION_ID_HASH, hashed(identifier))
        await self.app(scope, receive, send)


def stream_file(fd: int, size: int, name: str) -> StreamingResponse:
    """Send an open file as octet-stream, read in a thread chunk by chunk; closes ``fd``."""

    def chunks() -> Iterator[bytes]:
        try:
            while chunk := os.read(fd, 256 * 1024):
                yield chunk
        finally:
            os.close(fd)

    plain = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in name)
    disposition = f"attachment; filename=\"{plain}\"; filename*=UTF-8''{urllib.parse.quote(name)}"
    headers = {"Content-Length": str(size), "Content-Disposition": disposition}
    return StreamingResponse(chunks(), media_type="application/octet-stream", headers=headers)


def install_status(app: FastAPI, title: str, settings: Settings, executor: Executor) -> None:
    """Replace the common GET /status by one that also reports sessions, the pool and the sandbox."""
    app.router.routes[:] = [route for route in app.router.routes if not _is_status(route)]

    @app.get("/status", include_in_schema=False)
    async def status() -> dict[str, object]:
        return {"name": title, "instance_id": settings.instance_id, "status": "ready", **executor.status()}


def _is_status(route: BaseRoute) -> bool:
    return getattr(route, "path", None) == "/status"


def create_code_service(
    package: str,
    title: str,
    provider: str,
    executor_config: ExecutorConfig,
    settings: Settings,
    routers: list[APIRouter],
    install_errors: Callable[[FastAPI], None],
) -> FastAPI:
    """A service that runs code: the executor started and stopped with the app, /status with its pool,
    identifiers redacted on server spans; the face brings its routes and its error shape."""
    executor = Executor(executor_config, provider)
    app = create_service(package, settings, title=title, on_startup=[executor.start], on_shutdown=[executor.stop])
    app.state.executor = executor
    install_errors(app)
    install_status(app, title, settings, executor)
    app.add_middleware(RedactIdentifierMiddleware)
    for router in routers:
        app.include_router(router)
    return app
