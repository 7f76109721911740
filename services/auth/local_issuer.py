"""The embedded default issuer: an RSA key per data dir, its public half as a JWKS the Core API reads,
and tokens shaped as Entra ID's v2 access tokens (``iss``, ``aud``, ``exp``, ``scp``, ``oid``, ``upn``...).

``{data dir}/auth/signing-key.pem`` (0600) and ``{data dir}/auth/jwks.json`` are created once, by whoever
first needs them (``callstack up``, ``callstack token``, or the Core API itself), and reused after.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.auth.config import AUTH_DIR, DEFAULT_SCOPE, JWKS_FILE, LOCAL_AUDIENCE, LOCAL_ISSUER, SIGNING_KEY_FILE
from services.common.deployment_secrets import write_private
from services.common.models import LOCAL_DEVELOPER

ALGORITHM = "RS256"
DEFAULT_TTL_S = 3600
MAX_TTL_S = 24 * 3600
LOCAL_TENANT = "00000000-0000-0000-0000-00000000f11a"


class IssuerKeyMissingError(FileNotFoundError):
    """The data dir has no local issuer key (``callstack up`` creates it)."""


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class TokenUser:
    """Who a local token names; the defaults are the embedded local developer."""

    upn: str = LOCAL_DEVELOPER.upn or "developer@localhost"
    name: str = LOCAL_DEVELOPER.name or "Local Developer"
    oid: str = LOCAL_DEVELOPER.user_id or "00000000-0000-0000-0000-00000000d3v0"
    groups: tuple[str, ...] = ()


class LocalIssuer:
    def __init__(self, private_key: rsa.RSAPrivateKey, directory: Path) -> None:
        self._key = private_key
        self.directory = directory
        public = private_key.public_key().public_numbers()
        self.jwk = {"kty": "RSA", "use": "sig", "alg": ALGORITHM, "n": _b64(public.n), "e": _b64(public.e)}
        thumbprint = json.dumps({k: self.jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
        self.kid = base64.urlsafe_b64encode(hashlib.sha256(thumbprint.encode()).digest()).rstrip(b"=").decode()
        self.jwk["kid"] = self.kid  # RFC 7638 thumbprint, as Entra's kids are key thumbprints too

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk]}

    @classmethod
    def ensure(cls, data_dir: Path) -> LocalIssuer:
        """The data dir's issuer, generating its key (and JWKS) on first use; safe against a concurrent first use."""
        directory = data_dir.resolve() / AUTH_DIR
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with _locked(directory / ".lock"):
            key_path = directory / SIGNING_KEY_FILE
            if key_path.exists():
                issuer = cls.load(data_dir)
            else:
                key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
                write_private(key_path, pem.decode())
                issuer = cls(key, directory)
            issuer.publish()
        return issuer

    @classmethod
    def load(cls, data_dir: Path) -> LocalIssuer:
        directory = data_dir.resolve() / AUTH_DIR
        try:
            pem = (directory / SIGNING_KEY_FILE).read_bytes()
        except FileNotFoundError as error:
            raise IssuerKeyMissingError(
                f"no local issuer key in {directory} (`callstack up --data-dir {data_dir}` creates it)") from error
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{directory / SIGNING_KEY_FILE} is not an RSA private key")
        return cls(key, directory)

    def publish(self) -> Path:
        """Write the public keys where the Core API reads them (rewritten only when they changed)."""
        path = self.directory / JWKS_FILE
        text = json.dumps(self.jwks, indent=2) + "\n"
        with contextlib.suppress(FileNotFoundError):
            if path.read_text() == text:
                return path
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(text)
        os.replace(temporary, path)
        return path

    def mint(self, user: TokenUser | None = None, ttl_s: float = DEFAULT_TTL_S, *, audience: str = LOCAL_AUDIENCE,
             issuer: str = LOCAL_ISSUER, scope: str = DEFAULT_SCOPE, now: float | None = None,
             extra: dict[str, Any] | None = None) -> str:
        """A signed access token; ``now``/``audience``/``issuer``/``extra`` let tests forge wrong ones."""
        user = user or TokenUser()
        if not 0 < ttl_s <= MAX_TTL_S:
            raise ValueError(f"a token lives between 1 s and {MAX_TTL_S} s, not {ttl_s}")
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": issuer, "aud": audience, "iat": issued, "nbf": issued, "exp": issued + int(ttl_s),
            "ver": "2.0", "tid": LOCAL_TENANT, "sub": user.oid, "oid": user.oid, "upn": user.upn,
            "preferred_username": user.upn, "name": user.name, "scp": scope, "jti": str(uuid.uuid4()),
        }
        if user.groups:
            claims["groups"] = list(user.groups)
        claims.update(extra or {})
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid, "typ": "JWT"})


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
