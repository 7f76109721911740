"""The client every service uses for its next hop: base URL, API key, identity, timeout, and
failures turned into a HopError that names the hop (connection refused, timeout, 5xx, bad JSON)."""

from __future__ import annotations

from typing import Any

import httpx

from services.common.auth import API_KEY_HEADER, USER_IDENTITY_HEADER
from services.common.errors import HopError
from services.common.models import UnifiedUserIdentity
from telemetry.context import record_failure


class HopClient:
    def __init__(
        self,
        hop: str,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.hop = hop
        default_headers = {API_KEY_HEADER: api_key} if api_key else {}
        default_headers.update(headers or {})
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=default_headers,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        identity: UnifiedUserIdentity | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        request_headers = dict(headers or {})
        if identity is not None:
            request_headers[USER_IDENTITY_HEADER] = identity.model_dump_json()
        try:
            response = await self._client.request(method, path, json=json, headers=request_headers, **kwargs)
        except httpx.TimeoutException as error:
            raise self._failed(f"did not answer {method} {path} in time ({type(error).__name__})") from error
        except httpx.TransportError as error:
            raise self._failed(f"could not be reached ({type(error).__name__}: {error})") from error
        if response.status_code >= 500:
            raise self._failed(f"answered {response.status_code} to {method} {path}", response.status_code)
        return response

    async def call(self, method: str, path: str, *, expect: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        """Send a request and return its JSON body; any other status than ``expect`` is a failure."""
        response = await self.request(method, path, **kwargs)
        return await self.decode(response, method, path, expect)

    async def decode(self, response: httpx.Response, method: str, path: str, expect: tuple[int, ...] = (200,)) -> Any:
        """The JSON body of an expected answer; anything else is this hop's failure."""
        if response.status_code not in expect:
            detail = response.text[:200]
            raise self._failed(f"answered {response.status_code} to {method} {path}: {detail}", response.status_code)
        try:
            body = response.json()
        except ValueError as error:
            raise self._failed(f"answered malformed JSON to {method} {path}") from error
        if not isinstance(body, dict | list):
            raise self._failed(f"answered JSON that is not an object to {method} {path}")
        return body

    def _failed(self, reason: str, status_code: int | None = None) -> HopError:
        error = HopError(self.hop, reason, status_code)
        record_failure(error, hop=self.hop)
        return error

    async def aclose(self) -> None:
        await self._client.aclose()
