"""The pieces of authentication that need no chain: keyed hashes of ids, the deployment's secrets file,
the Entra ID settings, and token validation against an issuer's JWKS served over HTTP (on loopback)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from services.auth.config import LOCAL_AUDIENCE, AuthConfig, AuthConfigError
from services.auth.local_issuer import LocalIssuer, TokenUser
from services.auth.validator import InvalidTokenError, TokenValidator
from services.common.deployment_secrets import SECRET_ENV, deployment_secrets, read_secrets_file
from telemetry import id_hash
from telemetry.context import hashed

SESSION_ID = "conv-1234-code_interpreter-101112131"


# --- keyed hashes ---

def test_the_hash_of_an_id_depends_on_the_key() -> None:
    one, other = b"k" * 32, b"q" * 32
    assert id_hash.keyed_hash(SESSION_ID, key=one) != id_hash.keyed_hash(SESSION_ID, key=other)
    assert id_hash.keyed_hash(SESSION_ID, key=one) == hmac.new(one, SESSION_ID.encode(), "sha256").hexdigest()[:16]
    assert id_hash.keyed_hash(SESSION_ID, 64, key=one) != hashlib.sha256(SESSION_ID.encode()).hexdigest()


def test_spans_hash_with_the_deployment_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(id_hash.HASH_KEY_ENV, "deployment-key-one-0123456789")
    id_hash.reset_key()
    first = hashed(SESSION_ID)
    assert first == hmac.new(b"deployment-key-one-0123456789", SESSION_ID.encode(), "sha256").hexdigest()[:16]
    assert first != hashlib.sha256(SESSION_ID.encode()).hexdigest()[:16]  # not the guessable unkeyed hash
    monkeypatch.setenv(id_hash.HASH_KEY_ENV, "deployment-key-two-0123456789")
    id_hash.reset_key()
    assert hashed(SESSION_ID) != first and len(hashed(SESSION_ID)) == 16
    monkeypatch.delenv(id_hash.HASH_KEY_ENV)
    id_hash.reset_key()
    assert hashed(SESSION_ID) == hashed(SESSION_ID)  # a random key of the process: stable within it
    id_hash.reset_key()


# --- the deployment's secrets ---

def test_given_secrets_win_and_generated_ones_are_kept_0600(tmp_path: Path) -> None:
    first = deployment_secrets(tmp_path, {"FLLM_DYNAMIC_SESSIONS_TOKEN": "given-token"})
    assert first.env["FLLM_DYNAMIC_SESSIONS_TOKEN"] == "given-token" and set(first.env) == set(SECRET_ENV)
    assert first.path.stat().st_mode & 0o777 == 0o600
    stored = read_secrets_file(first.path)
    assert "FLLM_DYNAMIC_SESSIONS_TOKEN" not in stored and "given-token" not in first.path.read_text()
    assert len(set(first.env.values())) == len(SECRET_ENV)  # every generated secret its own
    assert first.signing_key is not None and first.signing_key.stat().st_mode & 0o777 == 0o600

    again = deployment_secrets(tmp_path, {"FLLM_STATE_API_KEY": "given-key"})
    assert again.env["FLLM_CORE_API_KEY"] == first.env["FLLM_CORE_API_KEY"]  # the data dir keeps its keys
    assert again.env["FLLM_STATE_API_KEY"] == "given-key"
    assert again.generated == ("FLLM_DYNAMIC_SESSIONS_TOKEN",)
    assert LocalIssuer.load(tmp_path).kid == LocalIssuer.ensure(tmp_path).kid  # one signing key per data dir


# --- Entra ID settings and a JWKS URL ---

def test_entra_settings_follow_the_tenant_and_client_id(tmp_path: Path) -> None:
    tenant, client = "72f988bf-0000-0000-0000-000000000000", "0c1a0000-0000-0000-0000-00000000c0de"
    config = AuthConfig.from_env(tmp_path, {"FLLM_AUTH_TENANT_ID": tenant, "FLLM_AUTH_CLIENT_ID": client})
    assert not config.local
    assert config.issuers == (f"https://login.microsoftonline.com/{tenant}/v2.0", f"https://sts.windows.net/{tenant}/")
    assert config.audiences == (client, f"api://{client}")
    assert config.jwks_url == f"https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys"
    assert config.required_scope == "Data.Read"
    with pytest.raises(AuthConfigError, match="FLLM_AUTH_CLIENT_ID"):
        AuthConfig.from_env(tmp_path, {"FLLM_AUTH_TENANT_ID": tenant})
    with pytest.raises(AuthConfigError, match="https"):
        AuthConfig.from_env(tmp_path, {"FLLM_AUTH_ISSUER": "x", "FLLM_AUTH_AUDIENCE": "y",
                                       "FLLM_AUTH_JWKS_URL": "http://keys.example.com/jwks"})
    assert AuthConfig.from_env(tmp_path, {}).local


@pytest.fixture()
def jwks_server(tmp_path: Path) -> Iterator[tuple[str, LocalIssuer, list[int]]]:
    """An issuer whose keys are served at a URL (as Entra ID's discovery keys), counting the fetches."""
    issuer = LocalIssuer.ensure(tmp_path)
    fetches: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            fetches.append(1)
            body = json.dumps(issuer.jwks).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/discovery/v2.0/keys", issuer, fetches
    server.shutdown()


def test_tokens_are_checked_against_keys_fetched_from_the_issuers_url(
        tmp_path: Path, jwks_server: tuple[str, LocalIssuer, list[int]]) -> None:
    url, issuer, fetches = jwks_server
    tenant, client = "tenant-0001", "client-0001"
    config = AuthConfig.from_env(tmp_path, {"FLLM_AUTH_TENANT_ID": tenant, "FLLM_AUTH_CLIENT_ID": client,
                                            "FLLM_AUTH_JWKS_URL": url})
    entra_issuer = f"https://login.microsoftonline.com/{tenant}/v2.0"
    alice = TokenUser(upn="alice@contoso.com", name="Alice", oid="oid-alice", groups=("g1",))

    async def scenario() -> None:
        validator = TokenValidator(config)
        try:
            token = issuer.mint(alice, audience=f"api://{client}", issuer=entra_issuer)
            identity = await validator.identity(f"Bearer {token}")
            assert (identity.upn, identity.name, identity.user_id, identity.group_ids) == (
                "alice@contoso.com", "Alice", "oid-alice", ["g1"])
            for wrong in (issuer.mint(alice, audience=LOCAL_AUDIENCE, issuer=entra_issuer),
                          issuer.mint(alice, audience=client, issuer="https://sts.windows.net/other/"),
                          issuer.mint(alice, audience=client, issuer=entra_issuer, extra={"upn": None,
                                                                                          "preferred_username": None})):
                with pytest.raises(InvalidTokenError):
                    await validator.identity(f"Bearer {wrong}")
            assert len(fetches) == 1  # the keys are fetched once, not per token
        finally:
            await validator.keys.aclose()

    asyncio.run(scenario())
