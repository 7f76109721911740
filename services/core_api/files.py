"""Core's files route, ``GET /instances/{instanceId}/files/{fileProvider}/{fileId}`` (the original's
FilesController.Download): the files a completion produced, from the Context API.

The Message's file URLs point here (``{{fllm_base_url}}/instances/{i}/files/FoundationaLLM.Context/{fileId}``).
Only the ``FoundationaLLM.Context`` provider exists in this chain; the Context API keeps each file with its
instance and user, and answers 404 for another user's file, so neither is readable here.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.auth.entry import caller
from services.common.errors import ServiceError
from services.common.hop_client import HopClient
from services.common.models import UnifiedUserIdentity
from services.core_api.activities import files_download_tags
from services.core_api.instance import core_instance
from telemetry import conventions as c
from telemetry.context import activity

CONTEXT_PROVIDER = "FoundationaLLM.Context"
FILE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,255}")  # file-{yyyyMMdd-HHmmss}-{base64url guid}
PROVIDER = re.compile(r"[A-Za-z0-9._-]{1,128}")


class ContextFilesClient:
    def __init__(self, base_url: str, api_key: str, timeout_s: float) -> None:
        self._hop = HopClient(c.CONTEXT_API, base_url, api_key, timeout_s)

    async def download(self, instance_id: str, file_id: str, identity: UnifiedUserIdentity) -> httpx.Response | None:
        """The Context API's answer with the bytes, or None for a file it does not have for this user."""
        path = f"/instances/{instance_id}/files/{urllib.parse.quote(file_id, safe='')}"
        response = await self._hop.request("GET", path, identity=identity)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            await self._hop.decode(response, "GET", path)  # raises the HopError naming the Context API
        return response

    async def aclose(self) -> None:
        await self._hop.aclose()


router = APIRouter(prefix="/instances/{instanceId}/files", dependencies=[Depends(caller), Depends(core_instance)])


@router.get("/{fileProvider}/{fileId}")
async def download_file(
    request: Request,
    fileProvider: str,  # noqa: N803 - the original's route parameters
    fileId: str,  # noqa: N803
    identity: Annotated[UnifiedUserIdentity, Depends(caller)],
) -> Response:
    instance_id = request.app.state.settings.instance_id
    with activity(c.SPAN_FLLM_CORE_FILES_DOWNLOAD, files_download_tags(instance_id, fileProvider[:128],
                                                                        fileId[:256], identity)):
        if not PROVIDER.fullmatch(fileProvider):
            raise ServiceError(400, "fileProvider must be 1-128 of [A-Za-z0-9._-].", "fileProvider")
        if fileProvider != CONTEXT_PROVIDER:
            raise ServiceError(404, f"The file provider '{fileProvider}' is not supported; files of this chain "
                                    f"are under '{CONTEXT_PROVIDER}'.", "fileProvider")
        if not FILE_ID.fullmatch(fileId):
            raise ServiceError(400, "fileId must be 1-256 of [A-Za-z0-9._-], starting with a letter or digit.",
                               "fileId")
        found = await request.app.state.context_files.download(instance_id, fileId, identity)
        if found is None:
            raise ServiceError(404, f"The file '{fileId}' was not found.", "fileId")
    media_type = found.headers.get("content-type", "application/octet-stream")
    disposition = found.headers.get("content-disposition") or f"attachment; filename*=UTF-8''{fileId}"
    # An API answer, never a page: no sniffing, and a download however the browser got here.
    return Response(found.content, media_type=media_type,
                    headers={"Content-Disposition": disposition, "X-Content-Type-Options": "nosniff"})
