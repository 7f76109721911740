"""The code-interpreter provider toward a real pool: an Entra token from an (injected) azure-identity
credential, cached until five minutes before expiry, against a local stand-in of the pool."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from services.common.settings import Settings
from services.context_api.config import CODE_INTERPRETER
from services.context_api.providers import TokenSource
from services.context_api.providers.tokens import SCOPE, is_loopback
from telemetry import conventions as c
from tests.context_api.conftest import BASE, closed_port_url, create_body, headers_for, make_app, make_config, running
from tests.context_api.standin import API_VERSION, POOL_PATH, PoolStandIn, serve

REAL_POOL = "https://westus2.dynamicsessions.io/subscriptions/s/resourceGroups/rg/sessionPools/p"


class FakeCredential:
    """Stands in for DefaultAzureCredential: hands out numbered tokens, counts the calls."""

    def __init__(self, lifetime_s: float = 3600.0, clock=time.time, fail: bool = False) -> None:  # noqa: ANN001
        self.calls: list[tuple[str, ...]] = []
        self.lifetime_s, self.clock, self.fail = lifetime_s, clock, fail

    @property
    def current(self) -> str:
        return f"entra-token-{len(self.calls)}"

    def get_token(self, *scopes: str, **_: object) -> AccessToken:
        self.calls.append(scopes)
        if self.fail:
            raise ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token")
        return AccessToken(self.current, int(self.clock() + self.lifetime_s))


@pytest.fixture
def credential() -> FakeCredential:
    return FakeCredential()


@pytest.fixture
def pool(credential: FakeCredential) -> Iterator[PoolStandIn]:
    with serve(PoolStandIn(token="entra-token-1")) as standin:
        yield standin


def azure_app(tmp_path: Path, pool_url: str, credential: FakeCredential, **config: object):  # noqa: ANN201
    # The stand-in is on loopback: force the azure-identity path the way a real pool endpoint chooses it.
    tokens = TokenSource("dev-token-never-sent", mode="azure-identity", credential=credential)
    return make_app(tmp_path, make_config(pool_url, closed_port_url(), **config), tokens)


def test_the_provider_speaks_the_pools_contract_with_an_entra_token(tmp_path: Path, pool: PoolStandIn,
                                                                    credential: FakeCredential) -> None:
    app = azure_app(tmp_path, pool.url, credential)

    async def scenario() -> None:
        async with running(app) as client:
            attach = await client.post(f"{BASE}/files", headers=headers_for(), data={"conversation_id": "conv-az"},
                                       files={"file": ("my data.csv", b"1,2", "text/csv")})
            assert attach.status_code == 200
            created = await client.post(f"{BASE}/codeSessions", json=create_body(CODE_INTERPRETER, "conv-az"),
                                        headers=headers_for())
            session = created.json()["session_id"]
            assert created.json()["endpoint"] == pool.url
            url = f"{BASE}/codeSessions/{session}"
            upload = await client.post(f"{url}/uploadFiles", json={"file_names": ["my data.csv"]},
                                       headers=headers_for())
            assert upload.json()["file_upload_success"] == {"my data.csv": True}
            assert pool.files[session] == {"/my data.csv": b"1,2"}
            executed = await client.post(f"{url}/executeCode", json={"code_to_execute": "print('hello')"},
                                         headers=headers_for())
            assert executed.json() == {"status": "Succeeded", "execution_result": "42",
                                       "standard_output": "hello\n", "error_output": ""}
            failed = await client.post(f"{url}/executeCode", json={"code_to_execute": "raise"}, headers=headers_for())
            assert failed.json() == {"status": "Failed", "execution_result": "", "standard_output": "partial\n",
                                     "error_output": "CodeExecutionFailed: ValueError: bad value"}
            download = await client.post(f"{url}/downloadFiles", json={"operation_id": upload.json()["operation_id"]},
                                         headers=headers_for())
            records = download.json()["file_records"].values()
            assert sorted(r["metadata"]["code_session_file_path"] for r in records) == ["/out/chart.png",
                                                                                         "/result.txt"]
            # A second upload wipes the session: files first, then the emptied directory.
            await client.post(f"{url}/uploadFiles", json={"file_names": []}, headers=headers_for())
            assert pool.files[session] == {}

    asyncio.run(scenario())
    assert pool.problems == []
    assert credential.calls == [(SCOPE,)]  # one token for every call: cached
    assert all(r["authorization"] == "Bearer entra-token-1" and r["query"]["api-version"] == API_VERSION
               for r in pool.requests)
    assert all(r["path"].startswith(POOL_PATH) for r in pool.requests)  # the endpoint's path is kept
    deletes = [(r["path"].rsplit("/", 1)[1], r["query"]["path"]) for r in pool.requests if r["method"] == "DELETE"]
    # The file name with a space travelled URL-encoded; the deepest entry went first, the directory after it.
    assert deletes[-4:] == [("chart.png", "/out"), ("my data.csv", "/"), ("result.txt", "/"), ("out", "/")]


@pytest.mark.parametrize(("code", "status", "words"), [("crash()", 502, "answered 500"),
                                                       ("sleep()", 504, "did not answer")])
def test_pool_failures_are_502_or_504_naming_the_hop(tmp_path: Path, pool: PoolStandIn, credential: FakeCredential,
                                                     code: str, status: int, words: str) -> None:
    app = azure_app(tmp_path, pool.url, credential, pool_timeout_s=0.5)

    async def scenario() -> None:
        async with running(app) as client:
            created = await client.post(f"{BASE}/codeSessions", json=create_body(), headers=headers_for())
            response = await client.post(f"{BASE}/codeSessions/{created.json()['session_id']}/executeCode",
                                         json={"code_to_execute": code}, headers=headers_for())
            assert response.status_code == status, response.text
            assert response.json()["hop"] == c.DYNAMIC_SESSIONS and words in response.json()["detail"]

    asyncio.run(scenario())


def test_a_credential_that_fails_is_a_502(tmp_path: Path, pool: PoolStandIn) -> None:
    app = azure_app(tmp_path, pool.url, FakeCredential(fail=True))

    async def scenario() -> None:
        async with running(app) as client:
            created = await client.post(f"{BASE}/codeSessions", json=create_body(), headers=headers_for())
            response = await client.post(f"{BASE}/codeSessions/{created.json()['session_id']}/executeCode",
                                         json={"code_to_execute": "1"}, headers=headers_for())
            assert response.status_code == 502
            assert "bearer token" in response.json()["detail"] and "ClientAuthenticationError" in response.json()[
                "detail"]

    asyncio.run(scenario())
    assert pool.requests == []  # nothing went to the pool without a token


def test_the_token_is_cached_until_five_minutes_before_expiry() -> None:
    now = [1_000_000.0]
    credential = FakeCredential(lifetime_s=3600, clock=lambda: now[0])
    tokens = TokenSource("dev", mode="auto", credential=credential, clock=lambda: now[0])

    async def scenario() -> list[str]:
        seen = [await tokens.token_for(REAL_POOL)]
        now[0] += 3600 - 301  # still more than five minutes left
        seen.append(await tokens.token_for(REAL_POOL))
        now[0] += 2  # less than five minutes left: refreshed
        seen.append(await tokens.token_for(REAL_POOL))
        seen += await asyncio.gather(*(tokens.token_for(REAL_POOL) for _ in range(5)))
        return seen

    assert asyncio.run(scenario()) == ["entra-token-1"] * 2 + ["entra-token-2"] * 6
    assert len(credential.calls) == 2


def test_which_pools_get_which_token(monkeypatch: pytest.MonkeyPatch) -> None:
    credential = FakeCredential()
    auto = TokenSource("dev", credential=credential)

    async def token(source: TokenSource, endpoint: str) -> str:
        return await source.token_for(endpoint)

    for local in ("http://127.0.0.1:6000", "http://localhost:8000/x", "http://[::1]:6000", "http://127.8.0.1"):
        assert is_loopback(local) and asyncio.run(token(auto, local)) == "dev"
    assert credential.calls == []  # the emulator never needs azure-identity
    assert asyncio.run(token(auto, REAL_POOL)) == "entra-token-1"
    assert not is_loopback("https://127.0.0.1.example.com")

    settings = Settings(dynamic_sessions_token="configured")
    monkeypatch.delenv("FLLM_DYNAMIC_SESSIONS_TOKEN", raising=False)
    monkeypatch.delenv("FLLM_DYNAMIC_SESSIONS_AUTH", raising=False)
    assert TokenSource.from_env(settings).uses_azure_identity(REAL_POOL)
    monkeypatch.setenv("FLLM_DYNAMIC_SESSIONS_TOKEN", "configured")  # an explicit token wins, also for Azure
    assert not TokenSource.from_env(settings).uses_azure_identity(REAL_POOL)
    monkeypatch.setenv("FLLM_DYNAMIC_SESSIONS_AUTH", "azure-identity")
    assert TokenSource.from_env(settings).uses_azure_identity("http://127.0.0.1:6000")
    monkeypatch.setenv("FLLM_DYNAMIC_SESSIONS_AUTH", "bogus")
    with pytest.raises(ValueError, match="FLLM_DYNAMIC_SESSIONS_AUTH"):
        TokenSource.from_env(settings)
