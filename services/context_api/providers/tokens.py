"""Bearer tokens toward a code session pool.

A real pool (any endpoint that is not on loopback) gets an Entra token for
``https://dynamicsessions.io/.default`` from azure-identity, cached until five minutes before it
expires. The local emulator gets the configured dev token (``FLLM_DYNAMIC_SESSIONS_TOKEN``), as does
any endpoint when that variable is set explicitly. ``FLLM_DYNAMIC_SESSIONS_AUTH`` overrides the choice:
``auto`` (default), ``token`` (always the configured token) or ``azure-identity`` (always Entra).

The credential (``FLLM_AZURE_CREDENTIAL``): ``default`` -> DefaultAzureCredential (managed identity in
Azure, the Azure CLI login locally, ...), ``cli`` -> AzureCliCredential, ``managed-identity`` ->
ManagedIdentityCredential(client_id=AZURE_CLIENT_ID), the original's production choice. The sync
credential runs in a worker thread (azure.identity.aio would need aiohttp), never on the event loop;
it is created on first use only, so nothing probes Azure while every endpoint is local.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
import urllib.parse
from collections.abc import Callable
from typing import Literal, Protocol

from azure.core.credentials import AccessToken

from services.common.settings import DynamicSessionsAuthSettings, Settings
from telemetry.context import hop_span, run_in_thread

SCOPE = "https://dynamicsessions.io/.default"
REFRESH_MARGIN_S = 300.0
AUTH_ENV = DynamicSessionsAuthSettings.variable("dynamic_sessions_auth")
CREDENTIAL_ENV = DynamicSessionsAuthSettings.variable("azure_credential")
TOKEN_ENV = DynamicSessionsAuthSettings.variable("dynamic_sessions_token")
SPAN_GET_TOKEN = "context.get_pool_token"

AuthMode = Literal["auto", "token", "azure-identity"]


class TokenCredential(Protocol):
    def get_token(self, *scopes: str) -> AccessToken: ...


class TokenUnavailableError(Exception):
    """The credential gave no token for the pool's scope."""


def is_loopback(endpoint: str) -> bool:
    host = (urllib.parse.urlsplit(endpoint).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_credential() -> TokenCredential:
    from azure.identity import AzureCliCredential, DefaultAzureCredential, ManagedIdentityCredential

    auth = DynamicSessionsAuthSettings()
    if auth.azure_credential == "cli":
        return AzureCliCredential()
    if auth.azure_credential == "managed-identity":
        return ManagedIdentityCredential(client_id=auth.azure_client_id)
    return DefaultAzureCredential()


class TokenSource:
    def __init__(
        self,
        dev_token: str,
        *,
        mode: AuthMode = "auto",
        credential: TokenCredential | None = None,
        credential_factory: Callable[[], TokenCredential] = default_credential,
        clock: Callable[[], float] = time.time,
        refresh_margin_s: float = REFRESH_MARGIN_S,
    ) -> None:
        self.dev_token = dev_token
        self.mode = mode
        self._credential = credential
        self._factory = credential_factory
        self._clock = clock
        self._margin = refresh_margin_s
        self._cached: AccessToken | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_env(cls, settings: Settings) -> TokenSource:
        auth = DynamicSessionsAuthSettings()
        mode: AuthMode = auth.dynamic_sessions_auth
        if mode == "auto" and auth.dynamic_sessions_token is not None:
            mode = "token"
        return cls(settings.dynamic_sessions_token, mode=mode)

    def uses_azure_identity(self, endpoint: str) -> bool:
        return self.mode == "azure-identity" or (self.mode == "auto" and not is_loopback(endpoint))

    async def token_for(self, endpoint: str) -> str:
        if not self.uses_azure_identity(endpoint):
            return self.dev_token
        cached = self._cached
        if cached is not None and self._fresh(cached):
            return cached.token
        async with self._lock:  # one refresh at a time; the others reuse its token
            if self._cached is None or not self._fresh(self._cached):
                self._cached = await self._fetch()
            return self._cached.token

    def _fresh(self, token: AccessToken) -> bool:
        return self._clock() < token.expires_on - self._margin

    async def _fetch(self) -> AccessToken:
        with hop_span(SPAN_GET_TOKEN, {"azure.identity.scope": SCOPE}):
            if self._credential is None:
                self._credential = self._factory()
            token = await run_in_thread(self._credential.get_token, SCOPE)
            if not token or not token.token:
                raise TokenUnavailableError(f"The credential returned no token for {SCOPE}.")
            return token
