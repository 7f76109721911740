"""The model behind the agent: a deterministic local model by default, Azure OpenAI when configured.

Both answer one turn of a function-calling conversation: text, or tool calls to run first.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from services.common.errors import HopError
from services.common.http import new_client
from services.common.settings import AzureOpenAISettings

CODE_BLOCK = re.compile(r"```(?:python|py)[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
CODE_FENCE = re.compile(r"```.*?(?:```|$)", re.DOTALL)
AZURE_OPENAI_SCOPE = "https://cognitiveservices.azure.com/.default"
# The original workflow's request for a new conversation's name (after the prompt and the answer).
TITLE_INSTRUCTION = ("Generate a brief title (3-6 words) that summarizes the main topic of this conversation. "
                     "Return only the title, no quotes or punctuation.")


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ModelTurn:
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatModel(Protocol):
    name: str
    provider: str  # gen_ai.provider.name

    async def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> ModelTurn: ...

    async def aclose(self) -> None: ...


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _title(prompt: str, words: int = 6) -> str:
    """Up to ``words`` words of the prompt's prose (code blocks left out), as a conversation title."""
    prose = re.findall(r"[A-Za-z0-9][A-Za-z0-9'-]*", CODE_FENCE.sub(" ", prompt))[:words]
    return " ".join(prose).capitalize() if prose else "New conversation"


class LocalDeterministicModel:
    """Runs a fenced ```python block of the prompt with the code interpreter, then answers with its output."""

    name = "local-deterministic"
    provider = "foundationallm.local"

    async def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> ModelTurn:
        last = messages[-1]
        if last["role"] == "user" and last["content"] == TITLE_INSTRUCTION:
            title = _title(next((m["content"] for m in messages if m["role"] == "user"), ""))
            return ModelTurn(text=title, prompt_tokens=_tokens(title), completion_tokens=_tokens(title))
        if last["role"] == "tool":
            return ModelTurn(text=last["content"], prompt_tokens=_tokens(last["content"]),
                             completion_tokens=_tokens(last["content"]))
        prompt = last["content"]
        match = CODE_BLOCK.search(prompt)
        tool_names = {tool["function"]["name"] for tool in tools}
        if match and "code_interpreter" in tool_names:
            call = ToolCall(id=f"call_{len(messages)}", name="code_interpreter", arguments={"code": match.group(1)})
            return ModelTurn(tool_calls=[call], prompt_tokens=_tokens(prompt))
        text = f"You asked: {prompt.strip()[:500]}\nThere is no Python code in the prompt to run."
        return ModelTurn(text=text, prompt_tokens=_tokens(prompt), completion_tokens=_tokens(text))

    async def aclose(self) -> None:
        pass


class AzureOpenAIModel:
    """Chat completions of an Azure OpenAI deployment over httpx, with an API key or an Entra token."""

    def __init__(self, endpoint: str, deployment: str, api_version: str, api_key: str | None,
                 credential: Any = None, timeout_s: float = 120.0) -> None:
        self.name = deployment
        self.provider = "azure.ai.openai"
        self._url = f"{endpoint.rstrip('/')}/openai/deployments/{deployment}/chat/completions"
        self._api_version = api_version
        self._api_key = api_key
        self._credential = credential
        self._token: tuple[str, float] | None = None
        self._client = new_client(timeout=timeout_s)

    async def _auth_headers(self) -> dict[str, str]:
        if self._api_key:
            return {"api-key": self._api_key}
        if self._token is None or self._token[1] - time.time() < 300:
            if self._credential is None:
                from azure.identity.aio import DefaultAzureCredential

                self._credential = DefaultAzureCredential()
            token = await self._credential.get_token(AZURE_OPENAI_SCOPE)
            self._token = (token.token, float(token.expires_on))
        return {"Authorization": f"Bearer {self._token[0]}"}

    async def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> ModelTurn:
        body: dict[str, Any] = {"messages": messages}
        if tools:
            body["tools"] = tools
        try:
            response = await self._client.post(self._url, params={"api-version": self._api_version}, json=body,
                                               headers=await self._auth_headers())
        except httpx.HTTPError as error:
            raise HopError("azure-openai", f"could not be reached ({type(error).__name__})") from error
        if response.status_code != 200:
            raise HopError("azure-openai", f"answered {response.status_code}: {response.text[:200]}",
                           response.status_code)
        try:
            body = response.json()
            choice = body["choices"][0]["message"]
            usage = body.get("usage") or {}
            calls = [
                ToolCall(id=call["id"], name=call["function"]["name"],
                         arguments=json.loads(call["function"].get("arguments") or "{}"))
                for call in choice.get("tool_calls") or []
            ]
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise HopError("azure-openai", f"answered a malformed chat completion ({type(error).__name__})") from error
        return ModelTurn(text=choice.get("content") or "", tool_calls=calls,
                         prompt_tokens=usage.get("prompt_tokens", 0),
                         completion_tokens=usage.get("completion_tokens", 0))

    async def aclose(self) -> None:
        await self._client.aclose()
        if self._credential is not None and hasattr(self._credential, "close"):
            await self._credential.close()


def model_from_env(name: str) -> ChatModel:
    if name == LocalDeterministicModel.name:
        return LocalDeterministicModel()
    if name == "azure-openai":
        azure = AzureOpenAISettings()
        return AzureOpenAIModel(endpoint=azure.azure_openai_endpoint, deployment=azure.azure_openai_deployment,
                                api_version=azure.azure_openai_api_version, api_key=azure.azure_openai_api_key)
    raise ValueError(f"FLLM_MODEL must be 'local-deterministic' or 'azure-openai', not {name!r}")
