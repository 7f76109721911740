"""The agent catalog of the embedded default: what Core authorises and Orchestration builds from."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, ValidationError

from services.common.settings import AgentSettings, SettingsError

CODE_INTERPRETER_TOOL = "code_interpreter"
PROVIDER_CODE_INTERPRETER = "AzureContainerAppsCodeInterpreter"
PROVIDER_CUSTOM_CONTAINER = "AzureContainerAppsCustomContainer"


class AgentTool(BaseModel):
    name: str
    description: str = ""
    properties: dict[str, Any] = Field(default_factory=dict)

    @property
    def code_session_required(self) -> bool:
        return bool(self.properties.get("code_session_required"))


class GatekeeperSettings(BaseModel):
    use_system_setting: bool = True
    options: list[str] = Field(default_factory=list)


class Agent(BaseModel):
    type: str = "generic-agent"
    name: str
    display_name: str = ""
    workflow_host: str = "LangChain"
    main_model: str = "local-deterministic"
    tools: list[AgentTool] = Field(default_factory=list)
    gatekeeper_settings: GatekeeperSettings = Field(default_factory=GatekeeperSettings)


def _code_agent(name: str, provider: str) -> Agent:
    tool = AgentTool(
        name=CODE_INTERPRETER_TOOL,
        description="Runs Python code in a code session and returns what it printed.",
        properties={
            "code_session_required": True,
            "code_session_endpoint_provider": provider,
            "code_session_language": "Python",
        },
    )
    return Agent(name=name, display_name=name, tools=[tool])


DEFAULT_AGENTS: dict[str, Agent] = {
    agent.name: agent
    for agent in (
        _code_agent("code-interpreter", PROVIDER_CODE_INTERPRETER),
        _code_agent("custom-container-coder", PROVIDER_CUSTOM_CONTAINER),
    )
}


def load_agents() -> dict[str, Agent]:
    """The embedded agents, plus any from FLLM_AGENTS (a JSON list of agents) replacing them by name."""
    agents = dict(DEFAULT_AGENTS)
    for item in AgentSettings().agents or ():
        try:
            agent = Agent.model_validate(item)
        except ValidationError as error:
            raise SettingsError(f"FLLM_AGENTS: not a list of agents ({error})") from None
        agents[agent.name] = agent
    return agents
