"""The agent catalog of the embedded default: what Core authorises and Orchestration builds from."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, ValidationError

from services.common.settings import AgentSettings, SettingsError

CODE_INTERPRETER_TOOL = "code_interpreter"
PROVIDER_CODE_INTERPRETER = "AzureContainerAppsCodeInterpreter"
PROVIDER_CUSTOM_CONTAINER = "AzureContainerAppsCustomContainer"
DEFAULT_WORKFLOW_NAME = "FunctionCalling"
WORKFLOW_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # it is part of span names


class AgentTool(BaseModel):
    name: str
    description: str = ""
    properties: dict[str, Any] = Field(default_factory=dict)

    @property
    def code_session_required(self) -> bool:
        return bool(self.properties.get("code_session_required"))


class AgentWorkflow(BaseModel):
    """The agent's workflow, as the original's agent definition carries it: its name names the workflow's
    spans ({name}_workflow, {name}_tool_call, ...) and its WorkflowExecution content artifact."""

    type: str = "external-agent-workflow"
    name: str = Field(DEFAULT_WORKFLOW_NAME, pattern=WORKFLOW_NAME_PATTERN)
    package_name: str = "foundationallm_agent_plugins"
    class_name: str = "FoundationaLLMFunctionCallingWorkflow"


class GatekeeperSettings(BaseModel):
    use_system_setting: bool = True
    options: list[str] = Field(default_factory=list)


class AgentUserPromptRewriteSettings(BaseModel):
    """The original's AgentUserPromptRewriteSettings: the rewriting model (here a model name of FLLM_MODEL's
    choices, or an object id ending in one), its system prompt (a prompt of the Orchestration API's
    catalog, services/orchestration_api/rewrite.py) and how many past user prompts (with the answers) it sees."""

    user_prompt_rewrite_ai_model_object_id: str = Field("local-deterministic", min_length=1, max_length=512)
    user_prompt_rewrite_prompt_object_id: str = Field("user-prompt-rewrite", min_length=1, max_length=512)
    user_prompts_window_size: int = Field(3, ge=1, le=100)


class AgentTextRewriteSettings(BaseModel):
    """The original's AgentTextRewriteSettings: the optional user prompt rewrite (Orchestration API)."""

    user_prompt_rewrite_enabled: bool = False
    user_prompt_rewrite_settings: AgentUserPromptRewriteSettings | None = None


class Agent(BaseModel):
    type: str = "generic-agent"
    name: str
    display_name: str = ""
    workflow_host: str = "LangChain"
    workflow: AgentWorkflow = Field(default_factory=AgentWorkflow)
    main_model: str = "local-deterministic"
    tools: list[AgentTool] = Field(default_factory=list)
    gatekeeper_settings: GatekeeperSettings = Field(default_factory=GatekeeperSettings)
    text_rewrite_settings: AgentTextRewriteSettings | None = None


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
