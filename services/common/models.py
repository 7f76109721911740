"""Wire models shared by several hops, with FoundationaLLM's field names and status values."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

OPERATION_TTL_S = 604800


def utc_now() -> datetime:
    return datetime.now(UTC)


class OperationStatus(StrEnum):
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"

    @property
    def is_terminal(self) -> bool:
        return self is not OperationStatus.IN_PROGRESS


class UnifiedUserIdentity(BaseModel):
    name: str | None = None
    user_name: str | None = None
    user_id: str | None = None
    upn: str | None = None
    associated_with_access_token: bool = False
    group_ids: list[str] = Field(default_factory=list)


LOCAL_DEVELOPER = UnifiedUserIdentity(
    name="Local Developer",
    user_name="developer@localhost",
    user_id="00000000-0000-0000-0000-00000000d3v0",
    upn="developer@localhost",
)


class CompletionRequest(BaseModel):
    """The body the User Portal posts to Core, and Core forwards downstream."""

    model_config = ConfigDict(extra="allow")

    user_prompt: str = Field(min_length=1, max_length=262_144)
    # The conversation id: the Context API's rule (it becomes part of a code session id), checked where it enters.
    session_id: str | None = Field(default=None, max_length=256, pattern=r"^[A-Za-z0-9._~@:+=|-]*$")
    agent_name: str = Field(default="code-interpreter", min_length=1, max_length=128)
    # The ids Core accepts: they end up in URL paths toward the next hops.
    operation_id: str | None = Field(default=None, max_length=128, pattern=r"^[A-Za-z0-9._-]*$")
    attachments: list[str] = Field(default_factory=list, max_length=10)
    settings: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    long_running_operation: bool = False
    is_new_conversation: bool = False
    message_history: list[dict[str, Any]] = Field(default_factory=list)
    file_history: list[dict[str, Any]] = Field(default_factory=list)


class LongRunningOperation(BaseModel):
    """FoundationaLLM's LongRunningOperation, snake_case; ``trace_id`` is this project's addition."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    type: str = "LongRunningOperation"
    operation_id: str
    status: OperationStatus
    status_message: str | None = None
    upn: str | None = None
    last_updated: datetime = Field(default_factory=utc_now)
    ttl: int = OPERATION_TTL_S
    prompt_tokens: int = 0
    result: dict[str, Any] | None = None
    trace_id: str | None = None
    failed_hop: str | None = None

    def model_post_init(self, _: Any) -> None:
        self.id = self.operation_id

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class TextContent(BaseModel):
    type: str = "text"
    text: str = ""
    agent_capability_category: str = "FoundationaLLM.KnowledgeManagement"
    annotations: list[dict[str, Any]] = Field(default_factory=list)
    value: str = ""


class CompletionResponse(BaseModel):
    """The LLM completion result document LangChain writes to State API."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    operation_id: str
    user_prompt: str = ""
    user_prompt_rewrite: str | None = None
    full_prompt: str | None = None
    completion: str = ""
    content: list[dict[str, Any]] = Field(default_factory=list)
    analysis_results: list[dict[str, Any]] = Field(default_factory=list)
    content_artifacts: list[dict[str, Any]] = Field(default_factory=list)
    conversation_name: str | None = None  # set for a new conversation: Core renames it
    user_prompt_embedding: list[float] = Field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    total_cost: float = 0.0
    errors: list[str] = Field(default_factory=list)
    is_error: bool = False
