"""Session files of 2024-10-02-preview and later: ``GET/POST /files``, ``GET/DELETE /files/{name}``,
``GET /files/{name}/content``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from services.code_execution.files import FileEntry, FileMissingError, InvalidPathError, split_directory, split_file
from services.code_execution.web import UploadFormatError, UploadTooLargeError, receive_upload, stream_file
from services.dynamic_sessions.compat import multipart_request
from services.dynamic_sessions.errors import AzureError
from services.dynamic_sessions.models import file_resource, legacy_file_list
from services.dynamic_sessions.params import LEGACY_API_VERSIONS, SessionCall, any_api, executions_api, require_bearer
from telemetry.context import run_in_thread

router = APIRouter(dependencies=[Depends(require_bearer)])
PathQuery = Query(None, description="The folder, relative to /mnt/data ('/mnt/data/...' also accepted).")


def invalid_path(error: InvalidPathError) -> AzureError:
    return AzureError(400, "InvalidFilePath", str(error), error.target)


def missing(name: str) -> AzureError:
    return AzureError(404, "FileNotFound", f"The session has no file '{name[:200]}' there.", "name")


async def upload_into(request: Request, call: SessionCall, path: str | None) -> FileEntry:
    """Shared by ``POST /files`` and the legacy ``POST /files/upload``: the stored file."""
    session = call.session()
    executor = call.executor
    request = await multipart_request(request)
    try:
        return await receive_upload(request, executor.files(session), path, executor.config.max_upload_bytes)
    except InvalidPathError as error:
        raise invalid_path(error) from error
    except UploadFormatError as error:
        raise AzureError(400, "InvalidRequestBody", str(error), "file") from error
    except UploadTooLargeError as error:
        raise AzureError(413, "RequestEntityTooLarge", str(error), "file") from error


@router.post("/files", summary="Upload a file (multipart field 'file')")
async def upload(request: Request, path: str | None = PathQuery,
                 call: SessionCall = Depends(executions_api)) -> JSONResponse:
    return JSONResponse(file_resource(await upload_into(request, call, path)))


@router.get("/files", summary="List files (the legacy versions: every file, in their list shape)")
async def list_files(
    path: str | None = PathQuery,
    recursive: bool = Query(False),
    call: SessionCall = Depends(any_api),
) -> JSONResponse:
    files = call.executor.files(call.session())
    if call.api_version in LEGACY_API_VERSIONS:
        return JSONResponse(legacy_file_list(await run_in_thread(files.walk_files)))
    try:
        entries = await run_in_thread(files.list, split_directory(path), recursive)
    except InvalidPathError as error:
        raise invalid_path(error) from error
    except FileMissingError as error:
        raise missing(path or "/") from error
    return JSONResponse({"value": [file_resource(entry) for entry in entries], "nextLink": None})


async def stream_content(call: SessionCall, path: str | None, name: str) -> Response:
    """A session file's bytes, streamed (both api-version families download through here)."""
    files = call.executor.files(call.session())
    try:
        directory, file_name = split_file(path, name)
        fd, entry = await run_in_thread(files.open_file, directory, file_name)
    except InvalidPathError as error:
        raise invalid_path(error) from error
    except FileMissingError as error:
        raise missing(name) from error
    return stream_file(fd, entry.size, entry.name)


@router.get("/files/{name}/content", summary="Download a file")
async def content(name: str, path: str | None = PathQuery, call: SessionCall = Depends(executions_api)) -> Response:
    return await stream_content(call, path, name)


@router.get("/files/{name}", summary="Get a file's properties")
async def get_file(
    name: str, path: str | None = PathQuery, call: SessionCall = Depends(executions_api)
) -> JSONResponse:
    files = call.executor.files(call.session())
    try:
        directory, file_name = split_file(path, name)
        entry = await run_in_thread(files.stat, directory, file_name)
    except InvalidPathError as error:
        raise invalid_path(error) from error
    except FileMissingError as error:
        raise missing(name) from error
    return JSONResponse(file_resource(entry))


@router.delete("/files/{name}", status_code=204, summary="Delete a file or a folder")
async def delete_file(name: str, path: str | None = PathQuery, call: SessionCall = Depends(executions_api)) -> Response:
    files = call.executor.files(call.session())
    try:
        directory, file_name = split_file(path, name)
        await run_in_thread(files.delete, directory, file_name)
    except InvalidPathError as error:
        raise invalid_path(error) from error
    except FileMissingError as error:
        raise missing(name) from error
    return Response(status_code=204)
