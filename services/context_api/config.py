"""Code-execution endpoints and provider settings, read as FoundationaLLM reads them.

``FLLM_CODE_INTERPRETER_ENDPOINTS`` holds the app-config value of
``FoundationaLLM:Code:CodeExecution:AzureContainerAppsDynamicSessions:CodeInterpreter`` and
``CONTEXTAPI_CODEEXECUTION_CUSTOMCONTAINER`` that of ``...:CustomContainer``; both are JSON
``{"Endpoints": {"Python": [...], "CSharp": [...]}}``. The first endpoint of a language is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.errors import ServiceError
from services.common.settings import MAX_EXECUTION_TIMEOUT_S, ContextApiSettings, Settings
from services.common.settings import parse_endpoints as parse_endpoints  # read as the Context API reads it

CODE_INTERPRETER = "AzureContainerAppsCodeInterpreter"
CUSTOM_CONTAINER = "AzureContainerAppsCustomContainer"
LOCAL_CUSTOM_CONTAINER = "LocalCustomContainer"  # internal: an enabled endpoint_provider_override
PROVIDERS = (CODE_INTERPRETER, CUSTOM_CONTAINER)
LANGUAGES = ("Python", "CSharp")

CODE_INTERPRETER_ENV = ContextApiSettings.variable("code_interpreter_endpoints")
CUSTOM_CONTAINER_ENV = ContextApiSettings.variable("custom_container_endpoints")
POOL_TIMEOUT_ENV = ContextApiSettings.variable("context_pool_timeout_s")
EXECUTION_TIMEOUT_ENV = ContextApiSettings.variable("context_execution_timeout_s")

MIB = 1024 * 1024
POOL_TIMEOUT_S = ContextApiSettings.model_fields["context_pool_timeout_s"].default


@dataclass(frozen=True)
class ContextApiConfig:
    endpoints: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # provider -> language -> urls
    pool_timeout_s: float = POOL_TIMEOUT_S
    execution_timeout_s: int = MAX_EXECUTION_TIMEOUT_S
    max_download_files: int = ContextApiSettings.model_fields["context_max_download_files"].default
    max_download_bytes: int = ContextApiSettings.model_fields["context_max_download_mb"].default * MIB

    @classmethod
    def from_env(cls, settings: Settings) -> ContextApiConfig:
        own = ContextApiSettings()
        configured = {
            CODE_INTERPRETER: (own.code_interpreter_endpoints, settings.urls["dynamic_sessions"]),
            CUSTOM_CONTAINER: (own.custom_container_endpoints, settings.urls["code_session_api"]),
        }
        endpoints = {p: value or {"Python": [default], "CSharp": []} for p, (value, default) in configured.items()}
        return cls(endpoints=endpoints, pool_timeout_s=own.context_pool_timeout_s,
                   execution_timeout_s=own.context_execution_timeout_s,
                   max_download_files=own.context_max_download_files,
                   max_download_bytes=own.context_max_download_mb * MIB)

    def endpoint_for(self, provider: str, language: str) -> str:
        urls = self.endpoints.get(provider, {}).get(language, [])
        if not urls:
            raise ServiceError(400, f"No {provider} endpoint is configured for the {language} language.", "language")
        return urls[0]
