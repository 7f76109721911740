"""The client every service uses for its next hop: base URL, API key, identity, timeout, and
failures turned into a HopError that names the hop (connection refused, timeout, 5xx, bad JSON).

Calls go through the service's shared httpx client (services.common.http), whose CLIENT spans come from
opentelemetry-instrumentation-httpx (a transport failure is recorded there). A failed hop is recorded
once, as a HopError naming the hop, on the caller's span where the call was made (the step or the server
span); spans it passes through on its way up are only marked failed.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from services.common.auth import API_KEY_HEADER, USER_IDENTITY_HEADER, identity_header
from services.common.errors import HopError
from services.common.http import shared_client
from services.common.models import UnifiedUserIdentity
from telemetry.context import record_failure
from telemetry.http_client import redact_session_ids

log = logging.getLogger("foundationallm.hop_client")
T = TypeVar("T")


def redact(path: str) -> str:
    """Code session ids (secrets) hashed, for error messages; telemetry does the same to span URLs."""
    return redact_session_ids(path)


async def retrying(call: Callable[[], Awaitable[T]], attempts: int, backoff_s: float, what: str) -> T:
    """``call()`` again after a HopError, up to ``attempts`` times in all, ``backoff_s`` doubling between; a
    refusal (4xx: it will not change) and the last failure are raised."""
    for attempt in range(attempts - 1):
        try:
            return await call()
        except HopError as error:
            if error.status_code is not None and error.status_code < 500:
                raise
            log.warning("%s failed (attempt %d), retrying: %s", what, attempt + 1, error)
            await asyncio.sleep(backoff_s * 2**attempt)
    return await call()


def callee_failed_hop(response: httpx.Response) -> str | None:
    """The hop a callee's error body names (``failed_hop``, or ``hop`` of the Context API's provider errors)."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict):
        hop = body.get("failed_hop") or body.get("hop")
        if isinstance(hop, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9.-]{1,40}", hop):
            return hop
    return None


def _recorded(error: HopError) -> HopError:
    record_failure(error)
    return error


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
        self._base = base_url.rstrip("/")
        self._headers = {API_KEY_HEADER: api_key} if api_key else {}
        self._headers.update(headers or {})
        self._timeout_s = timeout_s

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        identity: UnifiedUserIdentity | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        request_headers = {**self._headers, **(headers or {})}
        if identity is not None:
            request_headers[USER_IDENTITY_HEADER] = identity_header(identity)
        try:
            response = await shared_client().request(
                method, self._base + path, json=json, params=params, headers=request_headers,
                timeout=timeout or self._timeout_s,
            )
        except httpx.TimeoutException as error:
            raise self._failed(f"did not answer {method} {redact(path)} in time ({type(error).__name__})") from error
        except httpx.TransportError as error:
            raise self._failed(f"could not be reached ({type(error).__name__}: {error})") from error
        if response.status_code >= 500:
            raise self._answered(response, method, redact(path))
        return response

    async def call(self, method: str, path: str, *, expect: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        """Send a request and return its JSON body; any other status than ``expect`` is a failure."""
        response = await self.request(method, path, **kwargs)
        return await self.decode(response, method, path, expect)

    async def decode(self, response: httpx.Response, method: str, path: str,
                     expect: tuple[int, ...] = (200,)) -> Any:
        """The JSON body of an expected answer; anything else is this hop's failure."""
        if response.status_code not in expect:
            raise self._answered(response, method, redact(path))
        try:
            body = response.json()
        except ValueError as error:
            raise self._failed(f"answered malformed JSON to {method} {redact(path)}") from error
        if not isinstance(body, dict | list):
            raise self._failed(f"answered JSON that is not an object to {method} {redact(path)}")
        return body

    def _answered(self, response: httpx.Response, method: str, path: str) -> HopError:
        """An error answer; when the callee's body names a hop behind it that failed, that hop is named."""
        reason = f"answered {response.status_code} to {method} {path}: {redact(response.text[:300])}"
        behind = callee_failed_hop(response) if response.status_code >= 500 else None
        if behind and behind != self.hop:
            return _recorded(HopError(behind, f"{self.hop} {reason}", response.status_code))
        return _recorded(HopError(self.hop, reason, response.status_code))

    def _failed(self, reason: str) -> HopError:
        return _recorded(HopError(self.hop, reason))

    async def aclose(self) -> None:
        """Nothing of its own to close: the shared client is closed with the service."""
