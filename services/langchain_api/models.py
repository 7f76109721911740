"""The request Orchestration sends to LangChain API (LLMCompletionRequest)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.common.agents import DEFAULT_WORKFLOW_NAME, WORKFLOW_NAME_PATTERN


class WorkflowSpec(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = "external-agent-workflow"
    name: str = Field(DEFAULT_WORKFLOW_NAME, pattern=WORKFLOW_NAME_PATTERN)  # in span names


class AgentSpec(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["generic-agent"]
    name: str = Field(min_length=1, max_length=128)
    main_model: str = "local-deterministic"
    workflow: WorkflowSpec = Field(default_factory=WorkflowSpec)
    tools: list[dict[str, Any]] = Field(default_factory=list)


class LLMCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    operation_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")  # in State API URLs
    user_prompt: str = Field(min_length=1, max_length=262_144)
    user_prompt_rewrite: str | None = Field(default=None, max_length=262_144)
    session_id: str | None = None
    is_new_conversation: bool = False
    message_history: list[dict[str, Any]] = Field(default_factory=list)
    file_history: list[dict[str, Any]] = Field(default_factory=list)
    attachments: list[dict[str, Any]] = Field(default_factory=list)
    agent: AgentSpec
    objects: dict[str, Any] = Field(default_factory=dict)
