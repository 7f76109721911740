"""The optional user prompt rewrite (the original's UserPromptRewriteService, §4.1 step 3): an agent with
``text_rewrite_settings.user_prompt_rewrite_enabled`` gets its prompt rewritten as a standalone question
from the last user prompts of the conversation, by a model call in the activity ``UserPromptRewrite_LLM``.

As the original: no message history means no model call (the rewrite is the prompt itself); a failed
model call is logged and the rewrite is the prompt; an agent whose settings name an unknown prompt or
model cannot start. The local deterministic model (the default) has no language model to rewrite with:
its rewrite is the prompt, through the same activity; with ``azure-openai`` the deployment rewrites it.
"""

from __future__ import annotations

import logging
from typing import Any

from services.common.agents import Agent, AgentUserPromptRewriteSettings
from services.common.models import CompletionRequest
from services.langchain_api.chat_models import ChatModel, model_from_env
from telemetry import conventions as c
from telemetry.context import annotate, hop_span

log = logging.getLogger("foundationallm.orchestration_api")

REWRITE_PROMPTS = {
    "user-prompt-rewrite": (
        "You rewrite the user's latest message as a standalone question or request. Use the earlier "
        "messages only to resolve what the latest one refers to (pronouns, 'that file', 'the same for "
        "2023'). Keep the user's language, intent and any code or data verbatim. Answer with the rewritten "
        "message only, without any explanation."
    ),
}
LOCAL_MODEL = "local-deterministic"
MODELS = (LOCAL_MODEL, "azure-openai")


class RewriteConfigError(Exception):
    """The agent's rewrite settings name a prompt or model this deployment does not have."""


def _name(object_id: str) -> str:
    """The last segment of an object id (``/instances/{i}/providers/FoundationaLLM.Prompt/prompts/{name}``)."""
    return object_id.rstrip("/").rsplit("/", 1)[-1]


def _history(request: CompletionRequest, window: int) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    for item in request.message_history[-window * 2:]:
        sender, text = item.get("sender"), item.get("text") or ""
        if sender == "User":
            messages.append({"role": "user", "content": item.get("text_rewrite") or text})
        elif sender == "Agent":
            messages.append({"role": "assistant", "content": text})
        else:
            raise ValueError(f"Unknown message sender {sender}.")
    return messages


class UserPromptRewriter:
    def __init__(self) -> None:
        self._models: dict[str, ChatModel] = {}

    def settings_of(self, agent: Agent) -> AgentUserPromptRewriteSettings | None:
        rewrite = agent.text_rewrite_settings
        if rewrite is None or not rewrite.user_prompt_rewrite_enabled:
            return None
        settings = rewrite.user_prompt_rewrite_settings or AgentUserPromptRewriteSettings()
        if _name(settings.user_prompt_rewrite_prompt_object_id) not in REWRITE_PROMPTS:
            raise RewriteConfigError(f"The user prompt rewrite prompt {settings.user_prompt_rewrite_prompt_object_id}"
                                     f" of agent {agent.name} was not found.")
        if _name(settings.user_prompt_rewrite_ai_model_object_id) not in MODELS:
            raise RewriteConfigError(f"The user prompt rewrite model {settings.user_prompt_rewrite_ai_model_object_id}"
                                     f" of agent {agent.name} is not one of {', '.join(MODELS)}.")
        return settings

    async def rewrite(self, instance_id: str, agent: Agent, request: CompletionRequest) -> str | None:
        """The rewrite, or None when the agent does not rewrite prompts."""
        settings = self.settings_of(agent)
        if settings is None:
            return None
        if not request.message_history:  # "No need to rewrite a single message."
            return request.user_prompt
        model_name = _name(settings.user_prompt_rewrite_ai_model_object_id)
        try:
            messages: list[dict[str, Any]] = [
                {"role": "system", "content": REWRITE_PROMPTS[_name(settings.user_prompt_rewrite_prompt_object_id)]},
                *_history(request, settings.user_prompts_window_size),
                {"role": "user", "content": request.user_prompt},
            ]
            tags = {c.TAG_FLLM_INSTANCE_ID: instance_id, c.TAG_FLLM_OPERATION_ID: request.operation_id,
                    c.TAG_FLLM_CONVERSATION_ID: request.session_id or c.TAG_FLLM_NOT_AVAILABLE,
                    c.ATTR_OPERATION_ID: request.operation_id, c.ATTR_AGENT_NAME: agent.name,
                    c.ATTR_GEN_AI_OPERATION: "chat"}
            with hop_span(c.SPAN_FLLM_USER_PROMPT_REWRITE, tags) as span:
                if model_name == LOCAL_MODEL:  # no language model: the standalone form is the prompt
                    annotate({c.ATTR_GEN_AI_MODEL: LOCAL_MODEL}, span)
                    return request.user_prompt
                model = self._model(model_name)
                annotate({c.ATTR_GEN_AI_MODEL: model.name, c.ATTR_GEN_AI_PROVIDER: model.provider}, span)
                turn = await model.complete(messages, [])
            return turn.text.strip() or request.user_prompt
        except Exception as error:  # noqa: BLE001 - as the original: any failure, and the prompt is used
            log.error("The user prompt rewrite of agent %s failed (%s); the prompt is used as it is.",
                      agent.name, error)
            return request.user_prompt

    def _model(self, name: str) -> ChatModel:
        if name not in self._models:
            self._models[name] = model_from_env(name)
        return self._models[name]

    async def aclose(self) -> None:
        for model in self._models.values():
            await model.aclose()
