"""Files an answer carries: images shown inline, other files as download links, both through the chain.

Read from the agent Message: its ``content`` items (``image_file`` and ``file_path`` items, whose value
is Core's ``{{fllm_base_url}}/instances/{i}/files/FoundationaLLM.Context/{fileId}``; an inline image
result ``{type: "image", format, base64_data}`` as the data plane returns one) and its ``File`` content
artifacts (``filepath`` = the file record id). The page fetches them from ``/api/files/{fileId}``,
which gets them from Core with the portal's token: the browser never talks to Core or a filesystem.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from services.common.errors import ServiceError
from services.portal.errors import CoreApiError, CoreUnavailableError, PortalError

# The raster types a browser shows and the download route serves inline (never svg or html); .tiff and
# .ico, images to the workflow, are downloads here.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp")
INLINE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"}
FILE_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,255}$"
MAX_FILE_BYTES = 128 * 2**20
MAX_INLINE_BASE64 = 16 * 2**20
_URL_ID = re.compile(r"/files/FoundationaLLM\.Context/([A-Za-z0-9][A-Za-z0-9._-]{0,255})$")
_FORMATS = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}


def _is_image(name: str, content_type: str = "") -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) or content_type.lower() in INLINE_TYPES


def _file_id(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    match = _URL_ID.search(value.split("?")[0])
    if match:
        return match.group(1)
    return value if re.fullmatch(FILE_ID, value) else None


def _ref(file_id: str, name: str, content_type: str = "", image: bool = False) -> dict[str, str]:
    """``image``: the answer says so (an ``image_file`` item); shown inline unless its name says otherwise."""
    name = name or file_id
    named_other = bool(re.search(r"\.[A-Za-z0-9]{1,8}$", name)) and not _is_image(name)
    kind = "image" if _is_image(name, content_type) or (image and not named_other) else "file"
    return {"kind": kind, "name": name, "file_id": file_id, "url": f"api/files/{quote(file_id)}?name={quote(name)}"}


def _inline_image(item: dict[str, Any]) -> dict[str, str] | None:
    media = _FORMATS.get(str(item.get("format") or "png").lower())
    data = item.get("base64_data") or item.get("data")
    if media is None or not isinstance(data, str) or len(data) > MAX_INLINE_BASE64:
        return None
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
    return {"kind": "image", "name": "image result", "file_id": "", "url": f"data:{media};base64,{data}"}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _file_items(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The content items, each text item's ``annotations`` (the LangChain answer's ``file_path`` items,
    before Core flattens them into content items) right after it."""
    items: list[dict[str, Any]] = []
    for item in _dicts(message.get("content")):
        items.append(item)
        items.extend(_dicts(item.get("annotations")))
    return items


def files_of(message: dict[str, Any]) -> list[dict[str, str]]:
    """Core's Message as the original builds it: ``{type: image_file, value: <file URL>}`` (no file name)
    and, from the annotations, ``{type: file_path | image_file | html, fileName, value: <file URL>}``; the
    LangChain answer's ``image_file`` items and ``file_path`` annotations (``text``, ``file_id``); the data
    plane's image results; ``File`` artifacts (``filepath`` = the file id), which also name the files the
    items leave unnamed."""
    artifacts = [a for a in _dicts(message.get("contentArtifacts") or message.get("content_artifacts"))
                 if a.get("type") == "File" and _file_id(a.get("filepath"))]
    described: dict[str, tuple[str, str]] = {}
    for artifact in artifacts:
        metadata = artifact.get("metadata") if isinstance(artifact.get("metadata"), dict) else {}
        described.setdefault(str(_file_id(artifact.get("filepath"))), (
            str(metadata.get("original_file_name") or ""),
            str(metadata.get("content_type") or "")))
    found: dict[str, dict[str, str]] = {}
    for item in _file_items(message):
        kind = item.get("type")
        if kind == "image" and (inline := _inline_image(item)):
            found[f"inline-{len(found)}"] = inline
        elif kind in ("image_file", "file_path", "html"):  # html: Core's type for an .html/.htm annotation
            file_id = _file_id(item.get("file_id")) or _file_id(item.get("file_url")) or _file_id(item.get("value"))
            if file_id and file_id not in found:
                name, content_type = described.get(file_id, ("", ""))
                name = str(item.get("fileName") or item.get("file_name") or item.get("text") or name)
                found[file_id] = _ref(file_id, name, content_type, image=kind == "image_file")
    for file_id, (name, content_type) in described.items():
        found.setdefault(file_id, _ref(file_id, name, content_type))
    return list(found.values())


router = APIRouter()


@router.get("/api/files/{file_id}")
async def download(
    request: Request,
    file_id: Annotated[str, Path(pattern=FILE_ID)],
    name: Annotated[str | None, Query(max_length=255)] = None,
) -> Response:
    """The file from Core; images (raster types only) inline, anything else as an attachment."""
    try:
        content, content_type = await request.app.state.portal_client.download_file(file_id, MAX_FILE_BYTES)
    except CoreUnavailableError as error:
        raise ServiceError(503, str(error)) from error
    except CoreApiError as error:
        status = error.status_code if error.status_code in (401, 403, 404, 413) else 502
        raise ServiceError(status, str(error)) from error
    except PortalError as error:
        raise ServiceError(502, str(error)) from error
    media = content_type.split(";")[0].strip().lower()
    inline = media in INLINE_TYPES
    filename = (name or file_id).replace('"', "")
    headers = {
        "Content-Disposition": f"{'inline' if inline else 'attachment'}; filename*=UTF-8''{quote(filename)}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "private, max-age=300",
    }
    return Response(content, media_type=media if inline else "application/octet-stream", headers=headers)
