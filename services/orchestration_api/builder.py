"""OrchestrationBuilder: the agent, its tools' parameters, and a code session per code tool."""

from __future__ import annotations

from typing import Any

from services.common.agents import Agent
from services.common.errors import ServiceError
from services.common.models import CompletionRequest, UnifiedUserIdentity
from services.context_api.client import CodeSessionsClient
from telemetry import conventions as c
from telemetry.context import hop_span

CODE_SESSION_PROVIDERS = ("AzureContainerAppsCodeInterpreter", "AzureContainerAppsCustomContainer")
CODE_SESSION_LANGUAGES = ("Python", "CSharp")


class OrchestrationError(Exception):
    """The agent cannot be built; the operation fails to start with this message."""


class OrchestrationBuilder:
    def __init__(self, agents: dict[str, Agent], code_sessions: CodeSessionsClient) -> None:
        self._agents, self._code_sessions = agents, code_sessions

    def agent(self, name: str) -> Agent:
        agent = self._agents.get(name)
        if agent is None:
            raise ServiceError(404, f"The agent '{name}' was not found.", "agent_name")
        return agent

    async def build(self, instance_id: str, request: CompletionRequest, identity: UnifiedUserIdentity
                    ) -> tuple[Agent, dict[str, Any]]:
        agent = self.agent(request.agent_name)
        attributes = {c.ATTR_AGENT_NAME: agent.name, c.ATTR_TOOL_NAMES: [tool.name for tool in agent.tools]}
        with hop_span(c.SPAN_ORCHESTRATION_BUILD, attributes):
            objects: dict[str, Any] = {
                "FoundationaLLM.InstanceId": instance_id,
                "Agent.AgentName": agent.name,
                "ToolNames": [tool.name for tool in agent.tools],
            }
            for tool in agent.tools:
                parameters = dict(tool.properties)
                if tool.code_session_required:
                    parameters.update(await self._code_session(instance_id, agent, tool.name, parameters,
                                                               request, identity))
                objects[tool.name] = parameters
            return agent, objects

    async def _code_session(self, instance_id: str, agent: Agent, tool_name: str, properties: dict[str, Any],
                            request: CompletionRequest, identity: UnifiedUserIdentity) -> dict[str, str]:
        provider = properties.get("code_session_endpoint_provider")
        language = properties.get("code_session_language")
        if provider not in CODE_SESSION_PROVIDERS or language not in CODE_SESSION_LANGUAGES:
            raise OrchestrationError(
                f"The tool {tool_name} of agent {agent.name} needs code_session_endpoint_provider and"
                " code_session_language."
            )
        session = await self._code_sessions.create(instance_id, {
            "agent_name": agent.name,
            "conversation_id": request.session_id or request.operation_id,
            "context": tool_name,
            "endpoint_provider": provider,
            "language": language,
        }, identity)
        return {"code_session_endpoint": session["endpoint"], "code_session_id": session["session_id"]}
