"""The real chain answers as the original's hops do: Core's LongRunningOperation and 23-property Message
(with image_file and file_path items for the files the code wrote), Orchestration's and Gatekeeper's
status with the CompletionResponse field set, Core's files route (through the Context API, behind a fault
proxy), and the original's activities with their FoundationaLLM-* tags in the trace."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.instrumentation.utils import suppress_http_instrumentation

from services.auth.local_issuer import LocalIssuer, TokenUser
from services.common.auth import API_KEY_HEADER, USER_IDENTITY_HEADER
from services.common.settings import DEFAULT_INSTANCE_ID
from telemetry import conventions as c
from tests.chain.conftest import receiver  # noqa: F401 - the OTLP receiver fixture, shared
from tests.chain.spans import SERVER, ancestors, one
from tests.faults.harness import (
    GATEKEEPER_AGENT,
    FaultChain,
    Outcome,
    gatekeeper_agent,
    start_fault_chain,
    stop_fault_chain,
)
from tests.fidelity.original_models import (
    COMPLETION_RESPONSE_FIELDS,
    CONTENT_ARTIFACT_FIELDS,
    LONG_RUNNING_OPERATION_FIELDS,
    MESSAGE_CONTENT_FIELDS,
    MESSAGE_FIELDS,
    OPERATION_STATUSES,
)
from tests.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.chain

INSTANCE = DEFAULT_INSTANCE_ID
HOP_TIMEOUT_S = 3.0
REWRITE_AGENT = "rewriting-coder"
CODE = """import struct, zlib
def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff)
png = b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 1, 1, 8, 2, 0, 0, 0))
png += chunk(b'IDAT', zlib.compress(b'\\x00\\xff\\x00\\x00')) + chunk(b'IEND', b'')
open('/mnt/data/plot.png', 'wb').write(png)
open('/mnt/data/report.csv', 'w').write('a,b\\n1,2\\n')
print('wrote plot.png and report.csv')
"""
FILES_PROMPT = f"Make a picture and a table:\n```python\n{CODE}```"
FILE_URL = re.compile(rf"/instances/{INSTANCE}/files/FoundationaLLM\.Context/(file-[A-Za-z0-9._-]+)$")


def rewrite_agent() -> dict[str, Any]:
    agent = gatekeeper_agent() | {"name": REWRITE_AGENT, "gatekeeper_settings": {}}
    return agent | {"text_rewrite_settings": {"user_prompt_rewrite_enabled": True, "user_prompt_rewrite_settings": {
        "user_prompt_rewrite_ai_model_object_id": "local-deterministic",
        "user_prompt_rewrite_prompt_object_id": "user-prompt-rewrite", "user_prompts_window_size": 2}}}


@pytest.fixture(scope="module")
def fidelity(tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver) -> Iterator[FaultChain]:  # noqa: F811
    env = {"FLLM_HOP_TIMEOUT_S": str(HOP_TIMEOUT_S), "FLLM_AGENTS": json.dumps([gatekeeper_agent(), rewrite_agent()])}
    chain = start_fault_chain(tmp_path_factory.mktemp("fidelity"), receiver, env, proxied=("context_api",))
    yield chain
    stop_fault_chain(chain)


@pytest.fixture(scope="module")
def files_run(fidelity: FaultChain) -> Any:
    token = secrets.token_hex(6)
    outcome = fidelity.run(FILES_PROMPT, token=token, timeout_s=60)
    assert outcome.status == "Completed", outcome.body
    return outcome


def core_files(chain: FaultChain, provider: str, file_id: str, user: TokenUser | None = None,
               auth: bool = True) -> httpx.Response:
    headers = {"Authorization": f"Bearer {LocalIssuer.load(chain.chain.data_dir).mint(user)}"} if auth else {}
    with suppress_http_instrumentation():
        return httpx.get(f"{chain.core_url}/instances/{INSTANCE}/files/{provider}/{file_id}", headers=headers,
                         timeout=30.0, trust_env=False)


def file_ids(message: dict[str, Any]) -> dict[str, str]:
    """type -> file id, from the Message's image_file and file_path items (their values are Core URLs)."""
    found = {}
    for item in message["content"]:
        if item["type"] in ("image_file", "file_path"):
            match = FILE_URL.search(item["value"] or "")
            assert match, item
            found[item["type"]] = match.group(1)
    return found


def internal_headers(chain: FaultChain, package: str) -> dict[str, str]:
    env = chain.chain.service_env()
    key = env.get(f"FLLM_{package.upper()}_KEY") or f"dev-{package.replace('_', '-')}-key"
    identity = {"name": "Local Developer", "user_name": "developer@localhost", "upn": "developer@localhost",
                "user_id": "00000000-0000-0000-0000-00000000d3v0"}
    return {API_KEY_HEADER: key, USER_IDENTITY_HEADER: json.dumps(identity)}


# --- Core: the LongRunningOperation and the Message ---

def test_core_answers_the_original_long_running_operation_and_message(files_run: Any, fidelity: FaultChain) -> None:
    body = files_run.body
    assert set(body) >= LONG_RUNNING_OPERATION_FIELDS
    assert (body["id"], body["type"], body["status"]) == (files_run.operation_id, "LongRunningOperation", "Completed")
    message = body["result"]
    assert set(message) == MESSAGE_FIELDS
    assert message["status"] in OPERATION_STATUSES and message["operation_id"] == files_run.operation_id
    assert (message["type"], message["sender"], message["upn"]) == ("Message", "Agent", "developer@localhost")
    for item in message["content"]:
        assert set(item) == MESSAGE_CONTENT_FIELDS, item
    kinds = [item["type"] for item in message["content"]]
    assert kinds == ["file_path", "text", "image_file"], message["content"]
    assert next(i for i in message["content"] if i["type"] == "file_path")["fileName"] == "report.csv"
    assert set(file_ids(message)) == {"image_file", "file_path"}
    assert all(item["value"].startswith(fidelity.chain.url("core_api")) for item in message["content"]
               if item["type"] != "text")
    for artifact in message["contentArtifacts"]:
        assert set(artifact) >= CONTENT_ARTIFACT_FIELDS, artifact
    # A later poll answers the same Message.
    assert fidelity.wait(files_run).body["result"]["id"] == message["id"]


def test_the_start_answer_is_the_operation_without_a_message(fidelity: FaultChain) -> None:
    submitted = fidelity.submit("Just say hello")
    assert set(submitted.body) >= LONG_RUNNING_OPERATION_FIELDS
    if submitted.body["status"] == "InProgress":
        assert submitted.body["result"] is None  # as the original returns the downstream InProgress unchanged
    assert set(fidelity.wait(submitted).body["result"]) == MESSAGE_FIELDS


# --- Orchestration and Gatekeeper status ---

@pytest.mark.parametrize("package", ["orchestration_api", "gatekeeper_api"])
def test_orchestration_and_gatekeeper_status_answer_the_completion_response(fidelity: FaultChain,
                                                                            package: str) -> None:
    token = secrets.token_hex(6)
    agent = GATEKEEPER_AGENT if package == "gatekeeper_api" else "code-interpreter"
    outcome = fidelity.run(FILES_PROMPT, agent=agent, token=token, timeout_s=60)
    assert outcome.status == "Completed", outcome.body
    url = f"{fidelity.chain.url(package)}/instances/{INSTANCE}/async-completions/{outcome.operation_id}/status"
    with suppress_http_instrumentation():
        answer = httpx.get(url, headers=internal_headers(fidelity, package), timeout=30.0, trust_env=False)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) >= LONG_RUNNING_OPERATION_FIELDS
    assert body["status"] == "Completed"
    result = body["result"]
    assert set(result) >= COMPLETION_RESPONSE_FIELDS, sorted(COMPLETION_RESPONSE_FIELDS - set(result))
    image = next(item for item in result["content"] if item["type"] == "image_file")
    assert image["file_url"] == (f"{{{{fllm_base_url}}}}/instances/{INSTANCE}/files/FoundationaLLM.Context/"
                                 f"{image['file_id']}")
    note = result["content"][0]["annotations"][0]
    assert (note["text"], note["file_url"].endswith(note["file_id"])) == ("report.csv", True)


# --- Core's files route ---

def test_core_serves_the_generated_files_through_the_context_api(files_run: Any, fidelity: FaultChain) -> None:
    ids = file_ids(files_run.body["result"])
    image = core_files(fidelity, "FoundationaLLM.Context", ids["image_file"])
    assert image.status_code == 200, image.text
    assert image.content.startswith(b"\x89PNG\r\n\x1a\n") and image.headers["content-type"] == "image/png"
    assert image.headers["x-content-type-options"] == "nosniff"
    table = core_files(fidelity, "FoundationaLLM.Context", ids["file_path"])
    assert table.status_code == 200 and table.content == b"a,b\n1,2\n"
    assert "report.csv" in table.headers["content-disposition"]
    assert fidelity.proxies["context_api"].count("GET", rf"/files/{ids['file_path']}$") >= 1


def test_another_users_file_is_not_found(files_run: Any, fidelity: FaultChain) -> None:
    other = TokenUser(upn="mallory@example.com", name="Mallory", oid="11111111-2222-3333-4444-555555555555")
    answer = core_files(fidelity, "FoundationaLLM.Context", file_ids(files_run.body["result"])["image_file"], other)
    assert answer.status_code == 404, answer.text
    assert answer.json()["errors"][0]["field"] == "fileId"


@pytest.mark.parametrize(("provider", "file_id", "status", "field"), [
    ("FoundationaLLM.Context", "file-20260101-000000-unknown", 404, "fileId"),
    ("FoundationaLLM.Context", "-starts-with-a-dash", 400, "fileId"),
    ("FoundationaLLM.Context", "a" * 300, 400, "fileId"),
    ("FoundationaLLM.Context", "bad%20id", 400, "fileId"),
    ("FoundationaLLM.AzureOpenAI", "file-1", 404, "fileProvider"),
    ("Bad%20Provider", "file-1", 400, "fileProvider"),
])
def test_bad_or_unknown_file_references_get_a_clear_4xx(fidelity: FaultChain, provider: str, file_id: str,
                                                         status: int, field: str) -> None:
    answer = core_files(fidelity, provider, file_id)
    assert answer.status_code == status, answer.text
    assert answer.json()["errors"][0]["field"] == field


def test_the_files_route_needs_a_token(fidelity: FaultChain) -> None:
    assert core_files(fidelity, "FoundationaLLM.Context", "file-1", auth=False).status_code == 401


@pytest.mark.parametrize("fault", ["down", "500", "slow"])
def test_a_failing_context_api_is_named_never_a_500(files_run: Any, fidelity: FaultChain, fault: str) -> None:
    file_id = file_ids(files_run.body["result"])["image_file"]
    proxy = fidelity.proxies["context_api"]
    proxy.inject(fault, method="GET", path=rf"/files/{file_id}$", delay_s=HOP_TIMEOUT_S + 1.5)
    try:
        started = time.monotonic()
        answer = core_files(fidelity, "FoundationaLLM.Context", file_id)
    finally:
        proxy.clear()
    assert answer.status_code == 502, answer.text
    assert answer.json()["failed_hop"] == c.CONTEXT_API
    assert time.monotonic() - started < HOP_TIMEOUT_S + 5
    assert core_files(fidelity, "FoundationaLLM.Context", file_id).status_code == 200  # and it recovers


# --- the original's activities in the trace ---

def test_core_start_is_the_originals_activity_with_its_tags(files_run: Any, fidelity: FaultChain) -> None:
    spans = fidelity.spans(files_run.trace_id, lambda s: any(x.name == c.SPAN_FLLM_CORE_START_COMPLETION for x in s))
    activity = one(spans, c.SPAN_FLLM_CORE_START_COMPLETION, c.CORE_API)
    assert activity.kind == SERVER
    parent = ancestors(activity, spans)[0]
    assert (parent.service, parent.name, parent.kind) == (c.CORE_API, f"POST {c.ROUTE_ASYNC_COMPLETIONS}", SERVER)
    tags = activity.attributes
    assert tags[c.TAG_FLLM_INSTANCE_ID] == INSTANCE
    assert tags[c.TAG_FLLM_OPERATION_ID] == files_run.operation_id == tags[c.ATTR_OPERATION_ID]
    assert tags[c.TAG_FLLM_CONVERSATION_ID] == files_run.operation_id.replace("op-", "conv-")
    assert tags[c.TAG_FLLM_USER_ID] == "00000000-0000-0000-0000-00000000d3v0"
    assert re.fullmatch(r"[0-9a-f]{16}", str(tags[c.TAG_FLLM_UPN]))  # a keyed hash, never the UPN
    assert all("developer@localhost" not in str(value) for span in spans for value in span.attributes.values())
    # Everything Core calls happens inside the activity, as under the original's.
    orchestration = one(spans, f"POST {c.ROUTE_ASYNC_COMPLETIONS}", c.ORCHESTRATION_API)
    assert activity in ancestors(orchestration, spans)


def test_files_download_is_the_originals_activity(files_run: Any, fidelity: FaultChain) -> None:
    file_id = file_ids(files_run.body["result"])["file_path"]
    trace_id = secrets.token_hex(16)
    headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01", **fidelity.auth()}
    with suppress_http_instrumentation():
        answer = httpx.get(f"{fidelity.core_url}/instances/{INSTANCE}/files/FoundationaLLM.Context/{file_id}",
                           headers=headers, timeout=30.0, trust_env=False)
    assert answer.status_code == 200
    spans = fidelity.spans(trace_id, lambda s: any(x.service == c.CONTEXT_API for x in s))
    activity = one(spans, c.SPAN_FLLM_CORE_FILES_DOWNLOAD, c.CORE_API)
    assert activity.kind == SERVER
    assert activity.attributes[c.TAG_FLLM_FILE_ID] == file_id
    assert activity.attributes[c.TAG_FLLM_FILE_PROVIDER] == "FoundationaLLM.Context"
    context_server = one(spans, "GET /instances/{instanceId}/files/{fileId}", c.CONTEXT_API)
    assert activity in ancestors(context_server, spans)


def test_a_rewriting_agent_runs_user_prompt_rewrite_llm(fidelity: FaultChain) -> None:
    token = secrets.token_hex(6)
    trace_id = secrets.token_hex(16)
    body = {"user_prompt": "Run this:\n```python\nprint('again', 2 * 21)\n```", "agent_name": REWRITE_AGENT,
            "session_id": f"conv-{token}", "operation_id": f"op-{token}",
            "message_history": [{"sender": "User", "text": "Print 42"}, {"sender": "Agent", "text": "42"}]}
    headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01", **fidelity.auth()}
    with suppress_http_instrumentation():
        answer = httpx.post(f"{fidelity.core_url}/instances/{INSTANCE}/async-completions", json=body,
                            headers=headers, timeout=30.0, trust_env=False)
    assert answer.status_code == 202, answer.text
    spans = fidelity.spans(trace_id, lambda s: any(x.name == c.SPAN_FLLM_USER_PROMPT_REWRITE for x in s))
    rewrite = one(spans, c.SPAN_FLLM_USER_PROMPT_REWRITE, c.ORCHESTRATION_API)
    assert rewrite.attributes[c.TAG_FLLM_OPERATION_ID] == f"op-{token}"
    assert rewrite.attributes[c.TAG_FLLM_CONVERSATION_ID] == f"conv-{token}"
    assert rewrite.attributes[c.TAG_FLLM_INSTANCE_ID] == INSTANCE
    server = ancestors(rewrite, spans)[0]
    assert (server.service, server.kind) == (c.ORCHESTRATION_API, SERVER)
    done = fidelity.wait(Outcome(f"op-{token}", trace_id, "", answer.json(), time.monotonic()), timeout_s=60)
    assert done.status == "Completed", done.body
    assert "again 42" in done.body["result"]["text"]
