"""Bearer token validation as Microsoft.Identity.Web does it for FoundationaLLM's Core API: the signature
through the issuer's published keys (JWKS, looked up by ``kid``), the issuer, the audience, the lifetime,
and the required scope. The user's identity comes from the token's claims.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt

from services.auth.config import AuthConfig
from services.common.models import UnifiedUserIdentity

ALGORITHMS = ("RS256",)  # what Entra ID signs access tokens with
KEY_REFRESH_S = 30.0  # an unknown kid refetches the keys at most this often (key rollover, not a DoS lever)
CACHE_SIZE = 4096
MAX_TOKEN_CHARS = 16 * 1024


class InvalidTokenError(Exception):
    """A token that must be refused; ``error`` is RFC 6750's code (``None`` for a missing token)."""

    def __init__(self, message: str, error: str | None = "invalid_token") -> None:
        super().__init__(message)
        self.message, self.error = message, error


class KeySet:
    """The issuer's public keys by ``kid``, from a JWKS file or URL, reloaded when an unknown kid shows up."""

    def __init__(self, config: AuthConfig, http: httpx.AsyncClient | None = None) -> None:
        self._file: Path | None = config.jwks_file
        self._url = config.jwks_url
        self._http = http
        self._keys: dict[str, Any] = {}
        self._loaded_at = float("-inf")
        self._file_stamp: tuple[int, int] | None = None
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> Any | None:
        if kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            if kid not in self._keys and self._may_reload():
                await self._reload()
        return self._keys.get(kid)

    def _may_reload(self) -> bool:
        if self._file is not None:  # a changed file is read at once
            return self._stamp() != self._file_stamp or not self._keys
        return time.monotonic() - self._loaded_at >= KEY_REFRESH_S

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self._file.stat() if self._file else None
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_size) if stat else None

    async def _reload(self) -> None:
        self._loaded_at = time.monotonic()
        try:
            if self._file is not None:
                self._file_stamp = self._stamp()
                document = json.loads(self._file.read_text())
            else:
                document = await self._fetch()
            keys = jwt.PyJWKSet.from_dict(document).keys
        except (OSError, ValueError, httpx.HTTPError, jwt.PyJWKSetError, jwt.InvalidKeyError):
            return  # keep the keys we had; the token is refused as signed by an unknown key
        self._keys = {key.key_id: key for key in keys if key.key_id}

    async def _fetch(self) -> Any:
        assert self._url is not None
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(5.0))
        response = await self._http.get(self._url)
        response.raise_for_status()
        return response.json()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


@dataclass(frozen=True)
class _Valid:
    identity: UnifiedUserIdentity
    expires: float


class TokenValidator:
    def __init__(self, config: AuthConfig, keys: KeySet | None = None) -> None:
        self.config = config
        self.keys = keys or KeySet(config)
        self._valid: OrderedDict[str, _Valid] = OrderedDict()  # a token verified once is not verified again

    async def identity(self, authorization: str | None) -> UnifiedUserIdentity:
        """The caller of an ``Authorization: Bearer <token>`` header, or InvalidTokenError."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if not authorization:
            raise InvalidTokenError("A bearer token is required (Authorization: Bearer <token>).", None)
        if scheme.lower() != "bearer" or not token:
            raise InvalidTokenError("The Authorization header must be 'Bearer <token>'.", "invalid_request")
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidTokenError("The bearer token is too long.")
        cached = self._valid.get(token)
        if cached is not None:
            if time.time() < cached.expires + self.config.leeway_s:
                return cached.identity
            del self._valid[token]
            raise InvalidTokenError("The token has expired.")
        claims = await self.claims(token)
        identity = identity_of(claims)
        self._valid[token] = _Valid(identity, float(claims["exp"]))
        while len(self._valid) > CACHE_SIZE:
            self._valid.popitem(last=False)
        return identity

    async def claims(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as error:
            raise InvalidTokenError("The bearer token is not a JWT.") from error
        if header.get("alg") not in ALGORITHMS:
            raise InvalidTokenError("The token's signing algorithm is not accepted.")
        kid = header.get("kid")
        key = await self.keys.key(kid) if isinstance(kid, str) and kid else None
        if key is None:
            raise InvalidTokenError("The token is not signed by a key of the trusted issuer.")
        try:
            claims = jwt.decode(
                token, key, algorithms=list(ALGORITHMS), audience=list(self.config.audiences),
                issuer=list(self.config.issuers), leeway=self.config.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as error:
            raise InvalidTokenError("The token has expired.") from error
        except jwt.ImmatureSignatureError as error:
            raise InvalidTokenError("The token is not valid yet.") from error
        except jwt.InvalidAudienceError as error:
            raise InvalidTokenError("The token was not issued for this API (audience).") from error
        except jwt.InvalidIssuerError as error:
            raise InvalidTokenError("The token's issuer is not trusted.") from error
        except jwt.InvalidSignatureError as error:
            raise InvalidTokenError("The token's signature is not valid.") from error
        except jwt.PyJWTError as error:
            raise InvalidTokenError(f"The token is not valid ({type(error).__name__}).") from error
        self._check_scope(claims)
        return claims

    def _check_scope(self, claims: dict[str, Any]) -> None:
        required = self.config.required_scope
        if not required:
            return
        scopes = str(claims.get("scp") or "").split()
        roles = claims.get("roles") if isinstance(claims.get("roles"), list) else []
        if required not in scopes and required not in roles:
            raise InvalidTokenError(f"The token does not grant the '{required}' scope.", "insufficient_scope")


def _text(claims: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = claims.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def identity_of(claims: dict[str, Any]) -> UnifiedUserIdentity:
    """FoundationaLLM's Entra claims mapping: name, the username (upn / preferred_username) and the oid."""
    username = _text(claims, "upn", "preferred_username", "email", "unique_name")
    user_id = _text(claims, "oid", "sub")
    if username is None or user_id is None:
        raise InvalidTokenError("The token names no user (upn or preferred_username, and oid).")
    groups = claims.get("groups")
    return UnifiedUserIdentity(
        name=_text(claims, "name") or username, user_name=username, upn=username, user_id=user_id,
        group_ids=[g for g in groups if isinstance(g, str)] if isinstance(groups, list) else [],
    )
