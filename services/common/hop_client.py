"""The client every service uses for its next hop: base URL, API key, identity, timeout, and
failures turned into a HopError that names the hop (connection refused, timeout, 5xx, bad JSON)."""

from __future__ import annotations

import re
from typing import Any

import httpx

from services.common.auth import API_KEY_HEADER, USER_IDENTITY_HEADER
from services.common.errors import HopError
from services.common.keepalive import async_client
from services.common.models import UnifiedUserIdentity
from telemetry.context import record_failure
from telemetry.setup import redact_session_ids


def redact(path: str) -> str:
    """Code session ids (secrets) hashed, for error messages; telemetry does the same to span URLs."""
    return redact_session_ids(path)


def callee_failed_hop(response: httpx.Response) -> str | None:
    """The hop a callee's error body names (``failed_hop``, or ``hop`` of the Context API's provider errors)."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict):
        hop = body.get("failed_hop") or body.get("hop")
        if isinstance(hop, str) and re.fullmatch(r"[a-z][a-z0-9-]{1,40}", hop):
            return hop
    return None


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
        self._client = async_client(
            base_url=base_url,
            headers=default_headers,
            # Connecting gets the whole hop timeout: on a starved host an event-loop iteration can outlast a
            # short connect timeout, and a connect that succeeded is then reported as a ConnectTimeout.
            timeout=httpx.Timeout(timeout_s),
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
        shown = redact(path)
        try:
            response = await self._client.request(method, path, json=json, headers=request_headers, **kwargs)
        except httpx.TimeoutException as error:
            raise self._failed(f"did not answer {method} {shown} in time ({type(error).__name__})") from error
        except httpx.TransportError as error:
            raise self._failed(f"could not be reached ({type(error).__name__}: {error})") from error
        if response.status_code >= 500:
            raise self._answered(response, method, shown)
        return response

    async def call(self, method: str, path: str, *, expect: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        """Send a request and return its JSON body; any other status than ``expect`` is a failure."""
        response = await self.request(method, path, **kwargs)
        return await self.decode(response, method, path, expect)

    async def decode(self, response: httpx.Response, method: str, path: str, expect: tuple[int, ...] = (200,)) -> Any:
        """The JSON body of an expected answer; anything else is this hop's failure."""
        path = redact(path)
        if response.status_code not in expect:
            raise self._answered(response, method, path)
        try:
            body = response.json()
        except ValueError as error:
            raise self._failed(f"answered malformed JSON to {method} {path}") from error
        if not isinstance(body, dict | list):
            raise self._failed(f"answered JSON that is not an object to {method} {path}")
        return body

    def _answered(self, response: httpx.Response, method: str, path: str) -> HopError:
        """An error answer; when the callee's body names a hop behind it that failed, that hop is named."""
        reason = f"answered {response.status_code} to {method} {path}: {redact(response.text[:300])}"
        behind = callee_failed_hop(response) if response.status_code >= 500 else None
        if behind and behind != self.hop:
            return self._failed(f"{self.hop} {reason}", response.status_code, hop=behind)
        return self._failed(reason, response.status_code)

    def _failed(self, reason: str, status_code: int | None = None, hop: str | None = None) -> HopError:
        error = HopError(hop or self.hop, reason, status_code)
        record_failure(error, hop=error.hop)
        return error

    async def aclose(self) -> None:
        await self._client.aclose()
