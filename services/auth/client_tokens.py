"""Bearer tokens for the Core API's clients (the portal, ``callstack ask``, the benchmarks).

In order: ``FLLM_CORE_API_TOKEN`` (a token as given, e.g. from ``az account get-access-token``); with Entra ID
configured (``FLLM_AUTH_TENANT_ID``), azure-identity's credential for ``FLLM_AUTH_CLIENT_SCOPE`` (default
``api://{FLLM_AUTH_CLIENT_ID}/.default``); otherwise tokens minted by the data dir's local issuer, renewed
five minutes before they expire.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from services.auth.config import AuthConfig
from services.auth.local_issuer import DEFAULT_TTL_S, LocalIssuer, TokenUser
from services.common.settings import AuthSettings, CoreApiClientSettings

TOKEN_ENV = CoreApiClientSettings.variable("core_api_token")  # FLLM_CORE_API_TOKEN
SCOPE_ENV = CoreApiClientSettings.variable("auth_client_scope")  # FLLM_AUTH_CLIENT_SCOPE
RENEW_BEFORE_S = 300.0


class BearerSource(Protocol):
    async def token(self) -> str: ...


class StaticToken:
    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self) -> str:
        return self._token


class LocalIssuerTokens:
    """Tokens of the local issuer for one user, minted again shortly before each expires."""

    def __init__(self, issuer: LocalIssuer, user: TokenUser | None = None, ttl_s: float = DEFAULT_TTL_S) -> None:
        self._issuer, self._user, self._ttl = issuer, user or TokenUser(), ttl_s
        self._token, self._expires = "", 0.0

    async def token(self) -> str:
        if time.time() >= self._expires - min(RENEW_BEFORE_S, self._ttl / 2):
            self._token, self._expires = self._issuer.mint(self._user, self._ttl), time.time() + self._ttl
        return self._token


class AzureIdentityTokens:
    """Entra ID tokens for the Core API's scope from azure-identity (managed identity, Azure CLI login...)."""

    def __init__(self, scope: str) -> None:
        self.scope = scope
        self._credential = None
        self._token, self._expires = "", 0.0

    async def token(self) -> str:
        if time.time() >= self._expires - RENEW_BEFORE_S:
            if self._credential is None:
                from azure.identity import DefaultAzureCredential

                self._credential = DefaultAzureCredential()
            access = await asyncio.to_thread(self._credential.get_token, self.scope)
            self._token, self._expires = access.token, float(access.expires_on)
        return self._token


def bearer_source(data_dir: Path, env: Mapping[str, str] | None = None,
                  user: TokenUser | None = None) -> BearerSource | None:
    """The token a client of this deployment sends; None when there is none to send (no local key yet).

    From os.environ's ``FLLM_CORE_API_TOKEN`` and ``FLLM_AUTH_*``, or ``env``'s alone when given."""
    client = CoreApiClientSettings.from_mapping(env)
    if client.core_api_token:
        return StaticToken(client.core_api_token)
    config = AuthConfig.from_settings(data_dir, AuthSettings.from_mapping(env))
    if not config.local:
        scope = client.auth_client_scope or (f"api://{config.client_id}/.default" if config.client_id else "")
        return AzureIdentityTokens(scope) if scope else None
    try:
        return LocalIssuerTokens(LocalIssuer.load(data_dir), user)
    except FileNotFoundError:
        return None
