"""FoundationaLLM's Python Code Session API contract (custom container), on the shared executor.

A code exception answers 200 as the original does: ``results`` "" and ``error`` the original's "The code
execution failed with a ... error" text. Beyond the original, that answer keeps the partial stdout in
``output`` and adds ``stderr`` (the whole standard error, traceback included), ``status`` "Failed" and
``timed_out``; this project's Context API reads them as a Failed execution with the traceback. Other
differences, on purpose: file errors answer 400/404 (not 500); the listing is correct for sub-folders;
``file_name`` may be a path relative to /mnt/data.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from services.code_execution import ExecutionSpec, Executor, Session, SessionLimitError
from services.code_execution.files import FileMissingError, InvalidPathError, split_file
from services.code_execution.models import SUCCEEDED, ExecutionFailure
from services.code_execution.web import UploadFormatError, UploadTooLargeError, receive_upload, stream_file
from services.code_session_api.auth import require_bearer
from services.code_session_api.errors import DetailError
from services.code_session_api.models import DownloadRequest, ExecuteRequest, listing_item
from telemetry.context import run_in_thread

router = APIRouter(dependencies=[Depends(require_bearer)])
DEFAULT_IDENTIFIER = "default"
MAX_OUTPUT = 1024 * 1024  # the original captured output without a limit
IDENTIFIER = re.compile(r"""[a-zA-Z0-9_|}{\[\]:";'<>?/.,@#$%^&*()\-+=!~`]{4,128}""")
IdentifierQuery = Query(None, description="The session id the pool forwards (a secret); default session without.")


def _session(request: Request, identifier: str | None) -> tuple[Executor, Session]:
    executor: Executor = request.app.state.executor
    identifier = identifier or DEFAULT_IDENTIFIER
    if not IDENTIFIER.fullmatch(identifier):
        raise DetailError(400, "The identifier must be 4 to 128 characters of the allowed set.")
    try:
        return executor, executor.open_session(identifier)
    except SessionLimitError as error:
        raise DetailError(404, str(error)) from error


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except (ValueError, UnicodeDecodeError) as error:
        raise DetailError(400, "The request body must be a JSON object.") from error


@router.post("/code/execute", summary="Execute code in the code session")
async def execute(request: Request, identifier: str | None = IdentifierQuery) -> JSONResponse:
    body = ExecuteRequest.parse(await _json(request))
    if body.code is None:
        raise DetailError(400, "Code not provided in the request body.")
    executor, session = _session(request, identifier)
    timeout_s = float(body.timeout_seconds or executor.config.default_timeout_s)
    spec = ExecutionSpec(body.code, timeout_s, MAX_OUTPUT, named_results=True)
    record = await executor.run(session, spec, str(uuid.uuid4()))
    outcome = record.outcome
    assert outcome is not None
    if outcome.status == SUCCEEDED:
        return JSONResponse({"detail": {"results": outcome.results, "output": outcome.stdout, "error": outcome.stderr}})
    # 200, not an error status: the request was served; the code failed (the code.execute span says so).
    return JSONResponse({"detail": {
        "results": "", "output": outcome.stdout, "error": failure_text(outcome.failure), "stderr": outcome.stderr,
        "status": outcome.status, "timed_out": outcome.timed_out,
    }})


def failure_text(failure: ExecutionFailure | None) -> str:
    """The original's wording (PythonCodeSessionAPI ``execute_code``) for a code exception."""
    name, message = (failure.name, failure.message) if failure else ("Exception", "")
    return f"The code execution failed with a {name} error and the following exception message: {message}"


@router.post("/files/upload", summary="Upload a file to /mnt/data (multipart field 'file')")
async def upload(request: Request, identifier: str | None = IdentifierQuery) -> JSONResponse:
    executor, session = _session(request, identifier)
    try:
        entry = await receive_upload(request, executor.files(session), None, executor.config.max_upload_bytes)
    except InvalidPathError as error:
        raise DetailError(400, "Invalid file name.") from error
    except UploadFormatError as error:
        raise DetailError(400, str(error)) from error
    except UploadTooLargeError as error:
        raise DetailError(413, str(error)) from error
    filename = f"{entry.directory}/{entry.name}" if entry.directory else entry.name
    return JSONResponse({"status": "success", "filename": filename})


@router.get("/files", summary="List every file below /mnt/data")
async def list_files(request: Request, identifier: str | None = IdentifierQuery) -> JSONResponse:
    executor, session = _session(request, identifier)
    entries = await run_in_thread(executor.files(session).walk_files)
    return JSONResponse({"value": [listing_item(entry) for entry in entries]})


@router.post("/files/download", summary="Download a file (file_name relative to /mnt/data)")
async def download(request: Request, identifier: str | None = IdentifierQuery) -> Response:
    body = DownloadRequest.parse(await _json(request))
    if not body.file_name:
        raise DetailError(400, "The file name was not provided in the request body.")
    executor, session = _session(request, identifier)
    try:
        directory, name = split_file(None, body.file_name, "file_name")
        fd, entry = await run_in_thread(executor.files(session).open_file, directory, name)
    except InvalidPathError as error:
        raise DetailError(400, "Invalid file name.") from error
    except FileMissingError as error:
        raise DetailError(404, "File not found.") from error
    return stream_file(fd, entry.size, entry.name)


@router.post("/files/delete", summary="Delete every file in /mnt/data")
async def delete_files(request: Request, identifier: str | None = IdentifierQuery) -> JSONResponse:
    executor, session = _session(request, identifier)
    await run_in_thread(executor.files(session).clear)
    return JSONResponse({"status": "success"})
