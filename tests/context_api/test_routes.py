"""The Context API's own rules, in-process: auth, validation (400 naming the field), ownership (404),
the session-id rules, and a provider that is down (502 naming the hop, span ERROR)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from services.common.settings import Settings
from services.context_api.config import (
    CODE_INTERPRETER,
    CODE_INTERPRETER_ENV,
    CUSTOM_CONTAINER,
    CUSTOM_CONTAINER_ENV,
    ContextApiConfig,
)
from telemetry import conventions as c
from telemetry.context import hashed
from tests.context_api.conftest import (
    ALICE,
    BASE,
    BOB,
    KEY,
    closed_port_url,
    create_body,
    headers_for,
    make_app,
    make_config,
    running,
    spans_named,
)

DOWN_CI, DOWN_CC = closed_port_url(), closed_port_url()


def fields_of(response) -> list[str]:  # noqa: ANN001
    return [error["field"] for error in response.json().get("errors", [])]


@pytest.fixture
def app(tmp_path: Path):  # noqa: ANN201
    return make_app(tmp_path, make_config(DOWN_CI, DOWN_CC))


def test_api_key_instance_and_identity_are_checked(app) -> None:  # noqa: ANN001
    async def scenario() -> None:
        async with running(app) as client:
            url = f"{BASE}/codeSessions"
            missing = await client.post(url, json=create_body(), headers={"X-USER-IDENTITY": ALICE.model_dump_json()})
            assert missing.status_code == 401
            wrong = await client.post(url, json=create_body(), headers={**headers_for(), "X-API-KEY": "nope"})
            assert wrong.status_code == 401
            other = await client.post("/instances/other-instance/codeSessions", json=create_body(),
                                      headers=headers_for())
            assert other.status_code == 403
            anonymous = await client.post(url, json=create_body(), headers={"X-API-KEY": KEY})
            assert anonymous.status_code == 400 and fields_of(anonymous) == ["X-USER-IDENTITY"]
            garbled = await client.post(url, json=create_body(), headers={"X-API-KEY": KEY,
                                                                         "X-USER-IDENTITY": "{not json"})
            assert garbled.status_code == 400 and fields_of(garbled) == ["X-USER-IDENTITY"]

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"language": "Java"}, "language"),
        ({"language": "python"}, "language"),  # case-sensitive, as the original
        ({"endpoint_provider": "SomethingElse"}, "endpoint_provider"),
        ({"endpoint_provider": "LocalCustomContainer"}, "endpoint_provider"),  # internal only
        ({"conversation_id": ""}, "conversation_id"),
        ({"conversation_id": "a/b"}, "conversation_id"),
        ({"context": "has space"}, "context"),
        ({"agent_name": ""}, "agent_name"),
        ({"endpoint_provider_override": {"upn": "alice@contoso.com", "endpoint": "not a url", "enabled": True}},
         "endpoint_provider_override.endpoint"),
        ({"endpoint_provider_override": {"upn": "alice@contoso.com", "endpoint": "http://127.0.0.1:1"}},
         "endpoint_provider_override.enabled"),
        ({"endpoint_provider_override": {"upn": "bob@contoso.com", "endpoint": "http://127.0.0.1:1",
                                         "enabled": True}}, "endpoint_provider_override.upn"),
        ({"language": "CSharp"}, "language"),  # valid, but no CSharp endpoint is configured
    ],
)
def test_invalid_create_requests_are_400_naming_the_field(app, change: dict, field: str) -> None:  # noqa: ANN001
    async def scenario() -> None:
        async with running(app) as client:
            response = await client.post(f"{BASE}/codeSessions", json=create_body(**change), headers=headers_for())
            assert response.status_code == 400, response.text
            assert field in fields_of(response), response.json()

    asyncio.run(scenario())


def test_missing_fields_and_bad_json_are_400(app) -> None:  # noqa: ANN001
    async def scenario() -> None:
        async with running(app) as client:
            response = await client.post(f"{BASE}/codeSessions", json={"agent_name": "a"}, headers=headers_for())
            assert response.status_code == 400
            assert {"conversation_id", "context", "endpoint_provider", "language"} <= set(fields_of(response))
            response = await client.post(f"{BASE}/codeSessions", content=b"{", headers={
                **headers_for(), "Content-Type": "application/json"})
            assert response.status_code == 400

    asyncio.run(scenario())


def test_session_ids_follow_the_providers_rules_without_calling_them(app) -> None:  # noqa: ANN001
    async def scenario() -> None:
        async with running(app) as client:
            # The providers are down: creating a session must not call them.
            first = await client.post(f"{BASE}/codeSessions", json=create_body(conversation="Conv-ABC"),
                                      headers=headers_for())
            assert first.status_code == 200, first.text
            body = first.json()
            assert body["endpoint"] == DOWN_CI
            assert body["session_id"].startswith("conv-abc-code-") and len(body["session_id"]) == len(
                "conv-abc-code-") + 9
            assert body["session_id"] == body["session_id"].lower()
            await asyncio.sleep(0.005)
            second = await client.post(f"{BASE}/codeSessions", json=create_body(conversation="Conv-ABC"),
                                       headers=headers_for())
            assert second.json()["session_id"] != body["session_id"]  # a new session on every request

            long_conversation = "C" * 200
            stable = [
                (await client.post(f"{BASE}/codeSessions", headers=headers_for(),
                                   json=create_body(CUSTOM_CONTAINER, conversation=long_conversation))).json()
                for _ in range(2)
            ]
            assert stable[0] == stable[1]
            assert stable[0]["session_id"] == f"code-{long_conversation}-code"[:128].lower()
            assert stable[0]["endpoint"] == DOWN_CC

    asyncio.run(scenario())


def test_sessions_belong_to_their_user(app) -> None:  # noqa: ANN001
    async def scenario() -> None:
        async with running(app) as client:
            created = await client.post(f"{BASE}/codeSessions", json=create_body(), headers=headers_for(ALICE))
            session = f"{BASE}/codeSessions/{created.json()['session_id']}"
            for route, body in (("executeCode", {"code_to_execute": "1"}), ("uploadFiles", {"file_names": []}),
                                ("downloadFiles", {"operation_id": "x"})):
                response = await client.post(f"{session}/{route}", json=body, headers=headers_for(BOB))
                assert response.status_code == 404, (route, response.text)
                assert fields_of(response) == ["sessionId"]
            unknown = await client.post(f"{BASE}/codeSessions/no-such-session/executeCode",
                                        json={"code_to_execute": "1"}, headers=headers_for())
            assert unknown.status_code == 404 and fields_of(unknown) == ["sessionId"]
            no_upload = await client.post(f"{session}/downloadFiles", json={"operation_id": "nope"},
                                          headers=headers_for(ALICE))
            assert no_upload.status_code == 404 and fields_of(no_upload) == ["operation_id"]
            empty = await client.post(f"{session}/executeCode", json={"code_to_execute": ""}, headers=headers_for())
            assert empty.status_code == 400 and fields_of(empty) == ["code_to_execute"]
            bad_names = await client.post(f"{session}/uploadFiles", json={"file_names": ["../x"]},
                                          headers=headers_for())
            assert bad_names.status_code == 400 and fields_of(bad_names) == ["file_names"]
            no_file = await client.get(f"{BASE}/files/file-nope", headers=headers_for())
            assert no_file.status_code == 404 and fields_of(no_file) == ["fileId"]

    asyncio.run(scenario())


@pytest.mark.parametrize(("provider", "hop"), [(CODE_INTERPRETER, c.DYNAMIC_SESSIONS),
                                               (CUSTOM_CONTAINER, c.CODE_SESSION_API)])
def test_a_provider_that_is_down_is_a_502_naming_its_hop(app, span_exporter: InMemorySpanExporter, provider: str,
                                                        hop: str) -> None:  # noqa: ANN001
    span_exporter.clear()

    async def scenario() -> str:
        async with running(app) as client:
            created = await client.post(f"{BASE}/codeSessions", json=create_body(provider), headers=headers_for())
            session_id = created.json()["session_id"]
            response = await client.post(f"{BASE}/codeSessions/{session_id}/executeCode",
                                         json={"code_to_execute": "print(1)"}, headers=headers_for())
            assert response.status_code == 502, response.text
            body = response.json()
            assert body["hop"] == hop and body["provider"] == provider
            assert hop in body["detail"] and "could not be reached" in body["detail"]
            return session_id

    session_id = asyncio.run(scenario())
    server = spans_named(span_exporter, "POST /instances/{instanceId}/codeSessions/{sessionId}/executeCode")[-1]
    assert server.status.status_code is StatusCode.ERROR
    assert server.attributes[c.ATTR_FAILED_HOP] == hop
    assert [event.name for event in server.events] == ["exception"]  # recorded once, where it surfaced
    assert server.attributes[c.ATTR_CODE_SESSION_ID_HASH] == hashed(session_id)
    assert server.attributes[c.ATTR_CODE_SESSION_PROVIDER] == provider
    assert server.attributes[c.ATTR_TOOL_NAME] == "Code"
    dumped = json.dumps([dict(span.attributes or {}) for span in span_exporter.get_finished_spans()])
    assert session_id not in dumped  # the raw id is a secret: only its hash is on spans
    assert "print(1)" not in dumped


def test_endpoints_are_read_as_foundationallm_configures_them(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env()
    monkeypatch.delenv(CODE_INTERPRETER_ENV, raising=False)
    monkeypatch.delenv(CUSTOM_CONTAINER_ENV, raising=False)
    defaults = ContextApiConfig.from_env(settings)
    assert defaults.endpoint_for(CODE_INTERPRETER, "Python") == settings.urls["dynamic_sessions"]
    assert defaults.endpoint_for(CUSTOM_CONTAINER, "Python") == settings.urls["code_session_api"]

    pool = "https://westus2.dynamicsessions.io/subscriptions/s/resourceGroups/rg/sessionPools/pool"
    monkeypatch.setenv(CODE_INTERPRETER_ENV, json.dumps({"Endpoints": {"Python": [pool + "/"], "CSharp": []}}))
    monkeypatch.setenv(CUSTOM_CONTAINER_ENV, json.dumps({"Endpoints": {"Python": [], "CSharp": ["http://cs"]}}))
    config = ContextApiConfig.from_env(settings)
    assert config.endpoint_for(CODE_INTERPRETER, "Python") == pool
    assert config.endpoint_for(CUSTOM_CONTAINER, "CSharp") == "http://cs"
    with pytest.raises(Exception, match="language"):
        config.endpoint_for(CUSTOM_CONTAINER, "Python")
    monkeypatch.setenv(CUSTOM_CONTAINER_ENV, '{"Endpoints": ["x"]}')
    with pytest.raises(ValueError, match=CUSTOM_CONTAINER_ENV):
        ContextApiConfig.from_env(settings)
