"""The Azure OpenAI model behind the workflow's interface, against a local stand-in of the deployment."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from services.common.errors import HopError
from services.langchain_api.chat_models import AZURE_OPENAI_SCOPE, AzureOpenAIModel
from services.langchain_api.code_interpreter import CodeInterpreterTool
from tests.loopback_http import LoopbackServer, Reply, Request

TOOL_CALL = {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [
    {"id": "call_1", "type": "function",
     "function": {"name": "code_interpreter", "arguments": json.dumps({"code": "print(2 + 2)"})}}]}}],
    "usage": {"prompt_tokens": 31, "completion_tokens": 12}}
ANSWER = {"choices": [{"message": {"role": "assistant", "content": "It printed 4."}}],
          "usage": {"prompt_tokens": 40, "completion_tokens": 5}}


class Deployment:
    """Answers chat completions from a script and records every request."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.replies: list[tuple[int, bytes]] = []
        self.server = LoopbackServer(self._complete)
        self.endpoint = self.server.url

    def _complete(self, request: Request) -> Reply:
        self.requests.append({"path": request.path, "headers": {k.lower(): v for k, v in request.headers.items()},
                              "body": json.loads(request.body)})
        status, body = self.replies.pop(0)
        return Reply(status, body)


@pytest.fixture()
def deployment() -> Iterator[Deployment]:
    stand_in = Deployment()
    yield stand_in
    stand_in.server.stop()


class FakeCredential:
    def __init__(self) -> None:
        self.scopes: list[str] = []

    async def get_token(self, scope: str) -> SimpleNamespace:
        self.scopes.append(scope)
        return SimpleNamespace(token=f"entra-token-{len(self.scopes)}", expires_on=int(time.time()) + 3600)

    async def close(self) -> None:
        pass


def _turns(model: AzureOpenAIModel) -> tuple:
    async def converse() -> tuple:
        messages = [{"role": "user", "content": "What is 2 + 2? Run code."}]
        first = await model.complete(messages, [CodeInterpreterTool.definition])
        second = await model.complete(messages + [{"role": "tool", "tool_call_id": "call_1", "content": "4\n"}], [])
        await model.aclose()
        return first, second

    return asyncio.run(converse())


def test_a_tool_call_then_an_answer_with_an_api_key(deployment: Deployment) -> None:
    deployment.replies = [(200, json.dumps(TOOL_CALL).encode()), (200, json.dumps(ANSWER).encode())]
    model = AzureOpenAIModel(deployment.endpoint, "gpt-4o", "2024-10-21", api_key="test-key")
    first, second = _turns(model)
    calls = [(call.name, call.arguments) for call in first.tool_calls]
    assert calls == [("code_interpreter", {"code": "print(2 + 2)"})]
    assert (first.prompt_tokens, first.completion_tokens) == (31, 12)
    assert second.text == "It printed 4." and not second.tool_calls
    request = deployment.requests[0]
    assert request["path"] == "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
    assert request["headers"]["api-key"] == "test-key" and "authorization" not in request["headers"]
    assert request["body"]["tools"][0]["function"]["name"] == "code_interpreter"
    assert "tools" not in deployment.requests[1]["body"]


def test_without_a_key_an_entra_token_is_fetched_once_and_reused(deployment: Deployment) -> None:
    deployment.replies = [(200, json.dumps(TOOL_CALL).encode()), (200, json.dumps(ANSWER).encode())]
    credential = FakeCredential()
    model = AzureOpenAIModel(deployment.endpoint, "gpt-4o", "2024-10-21", api_key=None, credential=credential)
    _turns(model)
    assert credential.scopes == [AZURE_OPENAI_SCOPE]
    assert [r["headers"]["authorization"] for r in deployment.requests] == ["Bearer entra-token-1"] * 2


@pytest.mark.parametrize(("status", "reply", "reason"), [
    (429, b'{"error": {"code": "429"}}', "answered 429"),
    (200, b"not json", "malformed chat completion"),
    (200, b'{"choices": []}', "malformed chat completion"),
])
def test_a_failing_deployment_is_a_hop_error_naming_azure_openai(deployment: Deployment, status: int, reply: bytes,
                                                                 reason: str) -> None:
    deployment.replies = [(status, reply)]
    model = AzureOpenAIModel(deployment.endpoint, "gpt-4o", "2024-10-21", api_key="k")

    async def ask() -> None:
        try:
            await model.complete([{"role": "user", "content": "hi"}], [])
        finally:
            await model.aclose()

    with pytest.raises(HopError) as failure:
        asyncio.run(ask())
    assert failure.value.hop == "azure-openai" and reason in str(failure.value)
