"""Who issues the Core API's bearer tokens: the local issuer of a data dir (the default) or Entra ID.

Entra ID, as FoundationaLLM's Core API (``…CoreAPI:Configuration:Entra:{Instance,TenantId,ClientId,Scopes}``):

- ``FLLM_AUTH_TENANT_ID`` and ``FLLM_AUTH_CLIENT_ID`` (the Core API app registration) are enough: issuers
  ``{instance}{tenant}/v2.0`` and ``https://sts.windows.net/{tenant}/`` (v1 tokens), audiences the client id
  and ``api://{client id}``, keys from ``{instance}{tenant}/discovery/v2.0/keys``.
- ``FLLM_AUTH_INSTANCE`` (default ``https://login.microsoftonline.com/``), ``FLLM_AUTH_ISSUER``,
  ``FLLM_AUTH_AUDIENCE`` (comma-separated), ``FLLM_AUTH_JWKS_URL`` or ``FLLM_AUTH_JWKS_FILE`` override a part.
- ``FLLM_AUTH_REQUIRED_SCOPE`` (default ``Data.Read``, in ``scp`` or ``roles``; empty: none required).

Without any of these, the local issuer: keys from ``{data dir}/auth/jwks.json``. The variables are read
through ``AuthSettings`` (services/common/settings): a malformed one stops the service with a ``SettingsError``.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.common.settings import AuthSettings

LOCAL_ISSUER = "https://fllm-callstack.local/local-issuer/v2.0"
LOCAL_AUDIENCE = "api://fllm-callstack-core-api"
DEFAULT_SCOPE = "Data.Read"
ENTRA_INSTANCE = "https://login.microsoftonline.com/"
AUTH_DIR = "auth"
JWKS_FILE = "jwks.json"
SIGNING_KEY_FILE = "signing-key.pem"


class AuthConfigError(ValueError):
    """The FLLM_AUTH_* settings do not describe a usable issuer."""


def is_loopback(url: str) -> bool:
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AuthConfig:
    issuers: tuple[str, ...]
    audiences: tuple[str, ...]
    jwks_url: str | None = None
    jwks_file: Path | None = None
    required_scope: str | None = DEFAULT_SCOPE
    leeway_s: float = 60.0  # clock skew tolerated on exp/nbf/iat
    local: bool = True
    client_id: str | None = None

    @classmethod
    def local_issuer(cls, data_dir: Path) -> AuthConfig:
        return cls((LOCAL_ISSUER,), (LOCAL_AUDIENCE,), jwks_file=data_dir / AUTH_DIR / JWKS_FILE)

    @classmethod
    def from_env(cls, data_dir: Path, env: Mapping[str, str] | None = None) -> AuthConfig:
        """From ``FLLM_AUTH_*`` of os.environ, or of ``env`` alone when given."""
        return cls.from_settings(data_dir, AuthSettings.from_mapping(env))

    @classmethod
    def from_settings(cls, data_dir: Path, settings: AuthSettings) -> AuthConfig:
        if not settings.entra:
            return cls.local_issuer(data_dir)
        tenant, client_id = settings.auth_tenant_id, settings.auth_client_id
        issuers, audiences = settings.auth_issuer, settings.auth_audience
        jwks_url, jwks_file = settings.auth_jwks_url, settings.auth_jwks_file
        if tenant:
            instance = settings.auth_instance
            issuers = issuers or (f"{instance}{tenant}/v2.0", f"https://sts.windows.net/{tenant}/")
            jwks_url = jwks_url or (None if jwks_file else f"{instance}{tenant}/discovery/v2.0/keys")
            if client_id:
                audiences = audiences or (client_id, f"api://{client_id}")
        config = cls(issuers, audiences, jwks_url, jwks_file, settings.auth_required_scope, local=False,
                     client_id=client_id)
        config.check()
        return config

    def check(self) -> None:
        if not self.issuers:
            raise AuthConfigError("Set FLLM_AUTH_TENANT_ID or FLLM_AUTH_ISSUER: the trusted token issuer.")
        if not self.audiences:
            raise AuthConfigError("Set FLLM_AUTH_CLIENT_ID or FLLM_AUTH_AUDIENCE: the Core API's audience.")
        if not (self.jwks_url or self.jwks_file):
            raise AuthConfigError("Set FLLM_AUTH_JWKS_URL or FLLM_AUTH_JWKS_FILE: the issuer's signing keys.")
        if self.jwks_url and not (self.jwks_url.startswith("https://") or (
                self.jwks_url.startswith("http://") and is_loopback(self.jwks_url))):
            raise AuthConfigError("FLLM_AUTH_JWKS_URL must be https (plain http only on loopback).")
