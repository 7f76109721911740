"""The client every service uses for its next hop: base URL, API key, identity, timeout, and
failures turned into a HopError that names the hop (connection refused, timeout, 5xx, bad JSON)."""

from __future__ import annotations

import json as _json
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from services.common.auth import API_KEY_HEADER, USER_IDENTITY_HEADER, identity_header
from services.common.errors import HopError
from services.common.keepalive import KeepAlivePool, async_client, lean_pool_enabled
from services.common.models import UnifiedUserIdentity
from telemetry.client_spans import client_call
from telemetry.context import record_failure
from telemetry.setup import redact_session_ids


def redact(path: str) -> str:
    """Code session ids (secrets) hashed, for error messages; telemetry does the same to span URLs."""
    return redact_session_ids(path)


def callee_failed_hop(response: HopResponse) -> str | None:
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


@dataclass(frozen=True)
class HopResponse:
    status_code: int
    content: bytes

    def json(self) -> Any:
        return _json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300


@dataclass(frozen=True)
class Origin:
    """Where a plain-http request goes, encoded once: for the CLIENT span and for the wire."""

    base: str  # scheme://netloc, for url.full
    host: str
    port: int
    host_header: bytes
    host_bytes: bytes

    @classmethod
    def of(cls, url: urllib.parse.SplitResult) -> Origin:
        host = url.hostname or ""
        return cls(f"{url.scheme}://{url.netloc}", host, url.port or 80, url.netloc.encode("ascii"),
                   host.encode("ascii"))


async def exchange(pool: KeepAlivePool, origin: Origin, method: str, target: str, headers: dict[str, str],
                   body: bytes, timeout: float) -> HopResponse:
    """One request on the keep-alive pool, inside its CLIENT span; failures raise httpcore's exceptions."""
    with client_call(method, origin.base + target, origin.host, origin.port, headers) as call:
        wire_headers = [(b"host", origin.host_header), (b"content-length", b"%d" % len(body))]
        wire_headers += [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
        status, _, content = await pool.request(
            origin.host_bytes, origin.port, method.encode("ascii"), target.encode("latin-1"), wire_headers, body,
            timeout,
        )
        call.answered(status)
    return HopResponse(status, content)


class DirectClient:
    """Plain-http requests to any origin (a session pool's endpoint, say) on one keep-alive pool, each with
    its CLIENT span: what HopClient does for its one next hop, for callers whose origin varies per call."""

    def __init__(self, timeout_s: float) -> None:
        self._pool = KeepAlivePool()
        self._timeout_s = timeout_s

    @staticmethod
    def serves(url: str) -> bool:
        return url.startswith("http://")

    async def request(self, method: str, url: str, *, params: dict[str, str] | None = None,
                      headers: dict[str, str] | None = None, json: Any = None) -> HopResponse:
        parts = urllib.parse.urlsplit(url)
        origin = Origin.of(parts)
        headers = dict(headers or {})
        body = b""
        if json is not None:
            body = _json.dumps(json).encode()
            headers["content-type"] = "application/json"
        query = "&".join(q for q in (parts.query, urllib.parse.urlencode(params or {})) if q)
        target = (parts.path or "/") + ("?" + query if query else "")
        return await exchange(self._pool, origin, method, target, headers, body, self._timeout_s)

    async def aclose(self) -> None:
        await self._pool.aclose()


class HopClient:
    """Calls go straight to a ``KeepAlivePool`` with their own CLIENT span (telemetry.client_spans), not
    through httpx: httpx's client and its instrumentation cost ~0.6 ms of CPU per call on 2 cores, a
    third of what the calling services spent per completion. An https next hop goes through httpx."""

    def __init__(
        self,
        hop: str,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.hop = hop
        self._headers = {API_KEY_HEADER: api_key} if api_key else {}
        self._headers.update(headers or {})
        self._timeout_s = timeout_s
        self._base = base_url.rstrip("/")
        url = urllib.parse.urlsplit(self._base)
        self._origin, self._prefix = Origin.of(url), url.path
        plain = url.scheme == "http" and lean_pool_enabled()
        self._pool = KeepAlivePool() if plain else None
        # Connecting gets the whole hop timeout: on a starved host an event-loop iteration can outlast a
        # short connect timeout, and a connect that succeeded is then reported as a ConnectTimeout.
        self._httpx = None if plain else async_client(base_url=self._base, timeout=httpx.Timeout(timeout_s))

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
    ) -> HopResponse:
        request_headers = {**self._headers, **(headers or {})}
        if identity is not None:
            request_headers[USER_IDENTITY_HEADER] = identity_header(identity)
        body = b""
        if json is not None:
            body = _json.dumps(json).encode()
            request_headers["content-type"] = "application/json"
        target = self._prefix + path + ("?" + urllib.parse.urlencode(params) if params else "")
        shown = redact(path)
        try:
            response = await self._send(method, target, request_headers, body, timeout or self._timeout_s)
        except (httpcore.TimeoutException, httpx.TimeoutException) as error:
            raise self._failed(f"did not answer {method} {shown} in time ({type(error).__name__})") from error
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.PoolTimeout, httpx.TransportError) as error:
            raise self._failed(f"could not be reached ({type(error).__name__}: {error})") from error
        if response.status_code >= 500:
            raise self._answered(response, method, shown)
        return response

    async def _send(self, method: str, target: str, headers: dict[str, str], body: bytes,
                    timeout: float) -> HopResponse:
        if self._pool is None:
            assert self._httpx is not None
            answer = await self._httpx.request(method, target, content=body, headers=headers, timeout=timeout)
            return HopResponse(answer.status_code, answer.content)
        return await exchange(self._pool, self._origin, method, target, headers, body, timeout)

    async def call(self, method: str, path: str, *, expect: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        """Send a request and return its JSON body; any other status than ``expect`` is a failure."""
        response = await self.request(method, path, **kwargs)
        return await self.decode(response, method, path, expect)

    async def decode(self, response: HopResponse, method: str, path: str, expect: tuple[int, ...] = (200,)) -> Any:
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

    def _answered(self, response: HopResponse, method: str, path: str) -> HopError:
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
        if self._pool is not None:
            await self._pool.aclose()
        if self._httpx is not None:
            await self._httpx.aclose()
