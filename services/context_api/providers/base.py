"""What both providers share: the session target, its files, the pool's query and bearer token, and
failures of the pool turned into a ProviderError that names the provider hop (502, or 504 on timeout)."""

from __future__ import annotations

import logging
import urllib.parse
from dataclasses import dataclass
from typing import Any

import httpx

from services.common.errors import HopError
from services.context_api.models import CodeExecutionResult
from services.context_api.providers.tokens import TokenSource

API_VERSION = "2024-10-02-preview"
MAX_LISTED_FILES = 1000
MAX_DEPTH = 16
log = logging.getLogger("foundationallm.context_api")


@dataclass(frozen=True)
class SessionTarget:
    endpoint: str  # the pool management endpoint (or the override's endpoint)
    session_id: str


@dataclass(frozen=True)
class SessionFile:
    name: str
    parent_path: str  # "/" at the root, "/dir/sub" below it
    content_type: str = "application/octet-stream"
    size: int = 0
    is_directory: bool = False

    @property
    def path(self) -> str:
        return f"{self.parent_path.rstrip('/')}/{self.name}"

    @property
    def depth(self) -> int:
        return self.path.count("/")


class DownloadTooLargeError(Exception):
    """A session file's body went past what the download may still copy."""

    def __init__(self, size: int) -> None:
        super().__init__(f"{size} bytes or more")
        self.size = size


class ProviderError(HopError):
    """The pool failed; ``answer_status`` is what the Context API answers (502, 504 on a timeout)."""

    def __init__(self, hop: str, provider: str, message: str, answer_status: int = 502,
                 status_code: int | None = None) -> None:
        super().__init__(hop, f"{provider} {message}", status_code)
        self.provider = provider
        self.answer_status = answer_status


Answer = httpx.Response


def error_text(response: Answer) -> str:
    """The pool's own words: Azure's ``error.message``, FastAPI's ``detail``, or the body's start."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return f"{error.get('code', '')}: {error.get('message', '')}"[:300]
        if "detail" in body:
            return str(body["detail"])[:300]
    return str(body)[:300]


class PoolClient:
    """One provider's calls: ``{endpoint}{path}?api-version=...&identifier=...`` with a bearer token."""

    name = ""
    hop = ""

    def __init__(self, http: httpx.AsyncClient, tokens: TokenSource | None, api_version: str | None = API_VERSION,
                 name: str | None = None) -> None:
        self.http = http
        self.tokens = tokens  # None: no Authorization header (an override's local container)
        self.api_version = api_version
        self.name = name or self.name

    def _params(self, target: SessionTarget, **extra: str) -> dict[str, str]:
        params = {"api-version": self.api_version} if self.api_version else {}
        return {**params, "identifier": target.session_id, **extra}

    async def send(self, method: str, target: SessionTarget, path: str, step: str, *,
                   query: dict[str, str] | None = None, stream: bool = False, **kwargs: Any) -> Answer:
        """``path`` is already URL-encoded; ``step`` names the call in errors (no secrets in it). With
        ``stream`` the body is left unread (but for a 5xx): the caller reads it and closes the answer."""
        params = self._params(target, **(query or {}))
        headers: dict[str, str] = {}
        try:
            if self.tokens is not None:
                headers["Authorization"] = f"Bearer {await self.tokens.token_for(target.endpoint)}"
        except Exception as error:  # noqa: BLE001 - any credential failure is the pool being unusable
            raise self._failed(f"could not get a bearer token for the pool ({type(error).__name__}: {error})",
                               502) from error
        url = f"{target.endpoint}{path}"  # telemetry hashes the identifier on the client span's url.full
        try:
            request = self.http.build_request(method, url, params=params, headers=headers, **kwargs)
            response = await self.http.send(request, stream=stream)
            if stream and response.status_code >= 500:
                await response.aread()
        except httpx.TransportError as error:
            raise self._transport_failed(error, step) from error
        if response.status_code >= 500:
            raise self._failed(f"answered {response.status_code} to {step}: {error_text(response)}", 502,
                               response.status_code)
        return response

    async def read_bounded(self, method: str, target: SessionTarget, path: str, step: str, max_bytes: int,
                           **kwargs: Any) -> bytes | None:
        """The body of a 2xx (None otherwise), read no further than ``max_bytes``: past it, DownloadTooLarge."""
        response = await self.send(method, target, path, step, stream=True, **kwargs)
        try:
            if not response.is_success:
                return None
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise DownloadTooLargeError(int(declared))
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise DownloadTooLargeError(size)
                chunks.append(chunk)
            return b"".join(chunks)
        except httpx.TransportError as error:
            raise self._transport_failed(error, step) from error
        finally:
            await response.aclose()

    def _transport_failed(self, error: httpx.TransportError, step: str) -> ProviderError:
        if isinstance(error, httpx.TimeoutException):
            return self._failed(f"did not answer {step} in time ({type(error).__name__})", 504)
        return self._failed(f"could not be reached for {step} ({type(error).__name__}: {error})", 502)

    def _failed(self, reason: str, answer_status: int, status_code: int | None = None) -> ProviderError:
        # Recorded by the step's hop_span and on the server span by the error handler, not here (once each).
        return ProviderError(self.hop, self.name, reason, answer_status, status_code)

    def unexpected(self, response: Answer, step: str) -> ProviderError:
        return self._failed(f"answered {response.status_code} to {step}: {error_text(response)}", 502,
                            response.status_code)

    def json_of(self, response: Answer, step: str) -> Any:
        try:
            return response.json()
        except ValueError as error:
            raise self._failed(f"answered malformed JSON to {step}", 502, response.status_code) from error

    async def _list(self, target: SessionTarget, path: str) -> list[SessionFile]:
        query = {} if path == "/" else {"path": path}
        response = await self.send("GET", target, "/files", "GET /files", query=query)
        if response.status_code != 200:
            raise self.unexpected(response, "GET /files")
        body = self.json_of(response, "GET /files")
        items = body.get("value", []) if isinstance(body, dict) else []
        return [
            SessionFile(
                name=str(item["name"]),
                # The custom container lists every file flat, each with its folder; the code interpreter
                # lists one folder (its own ``directory`` field is ignored, as the original does).
                parent_path=_parent(item["parentPath"]) if "parentPath" in item else path,
                content_type=str(item.get("contentType") or "application/octet-stream"),
                size=int(item.get("sizeInBytes") or 0),
                is_directory=str(item.get("type", "file")).lower() == "directory",
            )
            for item in items
            if isinstance(item, dict) and item.get("name")
        ]

    async def list_files(self, target: SessionTarget) -> list[SessionFile]:
        """Every file and directory, walking into directories with ``path=`` (bounded)."""
        found: list[SessionFile] = []
        pending = ["/"]
        while pending and len(found) < MAX_LISTED_FILES:
            path = pending.pop(0)
            for entry in await self._list(target, path):
                found.append(entry)
                if entry.is_directory and entry.depth < MAX_DEPTH:
                    pending.append(entry.path)
        return found[:MAX_LISTED_FILES]

    # --- what each provider does its own way ---
    async def delete_files(self, target: SessionTarget) -> None:
        raise NotImplementedError

    async def upload_file(self, target: SessionTarget, name: str, content: bytes, content_type: str) -> bool:
        raise NotImplementedError

    async def download_file(self, target: SessionTarget, file: SessionFile, max_bytes: int) -> bytes | None:
        """The file's bytes, None when the pool refused; DownloadTooLargeError past ``max_bytes``."""
        raise NotImplementedError

    async def execute(self, target: SessionTarget, code: str, timeout_s: int) -> CodeExecutionResult:
        raise NotImplementedError


def _parent(parent_path: object) -> str:
    text = str(parent_path or "").strip("/")
    return f"/{text}" if text else "/"


def quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")
