"""Code-execution endpoints and provider settings, read as FoundationaLLM reads them.

``FLLM_CODE_INTERPRETER_ENDPOINTS`` holds the app-config value of
``FoundationaLLM:Code:CodeExecution:AzureContainerAppsDynamicSessions:CodeInterpreter`` and
``CONTEXTAPI_CODEEXECUTION_CUSTOMCONTAINER`` that of ``...:CustomContainer``; both are JSON
``{"Endpoints": {"Python": [...], "CSharp": [...]}}``. The first endpoint of a language is used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from services.common.errors import ServiceError
from services.common.settings import Settings

CODE_INTERPRETER = "AzureContainerAppsCodeInterpreter"
CUSTOM_CONTAINER = "AzureContainerAppsCustomContainer"
LOCAL_CUSTOM_CONTAINER = "LocalCustomContainer"  # internal: an enabled endpoint_provider_override
PROVIDERS = (CODE_INTERPRETER, CUSTOM_CONTAINER)
LANGUAGES = ("Python", "CSharp")

CODE_INTERPRETER_ENV = "FLLM_CODE_INTERPRETER_ENDPOINTS"
CUSTOM_CONTAINER_ENV = "CONTEXTAPI_CODEEXECUTION_CUSTOMCONTAINER"
POOL_TIMEOUT_ENV = "FLLM_CONTEXT_POOL_TIMEOUT_S"
EXECUTION_TIMEOUT_ENV = "FLLM_CONTEXT_EXECUTION_TIMEOUT_S"

POOL_TIMEOUT_S = 600.0  # Context API -> Dynamic Sessions, as the original's HttpClient
MAX_EXECUTION_TIMEOUT_S = 220  # the Dynamic Sessions limit per execution


def parse_endpoints(raw: str, source: str) -> dict[str, list[str]]:
    """``{"Endpoints": {"Python": [...], ...}}`` -> language -> endpoints (trailing ``/`` removed)."""
    try:
        value: Any = json.loads(raw)
        endpoints = value["Endpoints"]
        if not isinstance(endpoints, dict):
            raise TypeError("Endpoints is not an object")
        parsed = {}
        for language, urls in endpoints.items():
            if not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
                raise TypeError(f"Endpoints.{language} is not a list of strings")
            parsed[str(language)] = [url.rstrip("/") for url in urls if url.strip()]
        return parsed
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{source} is not valid code-execution endpoint JSON: {error}") from error


@dataclass(frozen=True)
class ContextApiConfig:
    endpoints: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # provider -> language -> urls
    pool_timeout_s: float = POOL_TIMEOUT_S
    execution_timeout_s: int = MAX_EXECUTION_TIMEOUT_S

    @classmethod
    def from_env(cls, settings: Settings) -> ContextApiConfig:
        env = os.environ
        defaults = {
            CODE_INTERPRETER: settings.urls.get("dynamic_sessions", "http://127.0.0.1:6000"),
            CUSTOM_CONTAINER: settings.urls.get("code_session_api", "http://127.0.0.1:8000"),
        }
        endpoints = {}
        for provider, variable in ((CODE_INTERPRETER, CODE_INTERPRETER_ENV), (CUSTOM_CONTAINER, CUSTOM_CONTAINER_ENV)):
            raw = env.get(variable)
            default = {"Python": [defaults[provider].rstrip("/")], "CSharp": []}
            endpoints[provider] = parse_endpoints(raw, variable) if raw else default
        return cls(
            endpoints=endpoints,
            pool_timeout_s=float(env.get(POOL_TIMEOUT_ENV, POOL_TIMEOUT_S)),
            execution_timeout_s=min(int(env.get(EXECUTION_TIMEOUT_ENV, MAX_EXECUTION_TIMEOUT_S)),
                                    MAX_EXECUTION_TIMEOUT_S),
        )

    def endpoint_for(self, provider: str, language: str) -> str:
        urls = self.endpoints.get(provider, {}).get(language, [])
        if not urls:
            raise ServiceError(400, f"No {provider} endpoint is configured for the {language} language.", "language")
        return urls[0]
