"""Bodies of the custom-container contract and its listing item."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.code_execution.config import MAX_TIMEOUT_S
from services.code_execution.files import FileEntry
from services.code_session_api.errors import DetailError

MAX_CODE_LENGTH = 4 * 1024 * 1024


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")

    @classmethod
    def parse(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise DetailError(400, "The request body must be a JSON object.")
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            problems = "; ".join(f"'{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in error.errors())
            raise DetailError(400, f"Invalid request body: {problems}") from error


class ExecuteRequest(_Body):
    code: str | None = Field(None, max_length=MAX_CODE_LENGTH)
    # Not in the original: the caller's execution timeout (the Context API's), as Dynamic Sessions' timeoutInSeconds.
    timeout_seconds: int | None = Field(None, gt=0, le=MAX_TIMEOUT_S)


class DownloadRequest(_Body):
    file_name: str | None = Field(None, max_length=4096)


def listing_item(entry: FileEntry) -> dict[str, object]:
    """One file of ``GET /files``: ``parentPath`` is its folder relative to /mnt/data ("" at the root)."""
    return {
        "name": entry.name,
        "type": "file",
        "contentType": entry.content_type,
        "sizeInBytes": entry.size,
        "lastModifiedAt": entry.last_modified,
        "parentPath": entry.directory,
    }
