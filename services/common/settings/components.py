"""Settings of single services: the portal, the chat model, the Context API and its pool credentials, the Core
API's token issuer and its clients' tokens, the Code Session API's bearer check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PositiveFloat, PositiveInt, field_validator
from pydantic_settings import NoDecode

from services.common.settings.base import FllmSettings, lower

MAX_EXECUTION_TIMEOUT_S = 220  # the Dynamic Sessions limit per execution
Endpoints = dict[str, list[str]]  # language -> endpoints


def parse_endpoints(raw: str, source: str) -> Endpoints:
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


class PortalSettings(FllmSettings):
    """The portal web app (and the CLI, which submits as the portal does)."""

    jaeger_url: str | None = None  # FLLM_JAEGER_URL: trace links
    portal_wait_timeout_s: PositiveFloat = 1800.0  # Core's own hard stop for an operation is 30 minutes
    portal_max_waits: PositiveInt = 256

    @field_validator("jaeger_url", mode="before")
    @classmethod
    def _http_or_none(cls, url: Any) -> Any:
        url = url.strip().rstrip("/") if isinstance(url, str) else url
        if url and not url.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return url or None


class AzureOpenAISettings(FllmSettings):
    """The chat model with FLLM_MODEL=azure-openai; no API key: an Entra ID token."""

    azure_openai_endpoint: str = Field(min_length=1)
    azure_openai_deployment: str = "gpt-4o"
    azure_openai_api_version: str = "2024-10-21"
    azure_openai_api_key: str | None = None

    @field_validator("azure_openai_api_key")
    @classmethod
    def _empty_is_none(cls, key: str | None) -> str | None:
        return key or None


class ContextApiSettings(FllmSettings):
    """Code-execution endpoints as FoundationaLLM configures them (app-config JSON), and the pool timeouts."""

    code_interpreter_endpoints: Annotated[Endpoints | None, NoDecode] = Field(
        None, validation_alias="FLLM_CODE_INTERPRETER_ENDPOINTS")
    custom_container_endpoints: Annotated[Endpoints | None, NoDecode] = Field(
        None, validation_alias="CONTEXTAPI_CODEEXECUTION_CUSTOMCONTAINER")
    context_pool_timeout_s: PositiveFloat = 600.0  # Context API -> code session pool, as the original's HttpClient
    context_execution_timeout_s: Annotated[int, Field(gt=0)] = MAX_EXECUTION_TIMEOUT_S
    # What one downloadFiles may copy out of a session into the data dir (files past it are named in errors).
    context_max_download_files: PositiveInt = 20
    context_max_download_mb: PositiveInt = 32

    @field_validator("code_interpreter_endpoints", "custom_container_endpoints", mode="before")
    @classmethod
    def _parse(cls, raw: Any) -> Any:
        return parse_endpoints(raw, "the value") if isinstance(raw, str) and raw else (raw or None)

    @field_validator("context_execution_timeout_s")
    @classmethod
    def _within_the_limit(cls, seconds: int) -> int:
        return min(seconds, MAX_EXECUTION_TIMEOUT_S)


class DynamicSessionsAuthSettings(FllmSettings):
    """How the Context API authenticates to a code session pool (services/context_api/providers/tokens.py)."""

    dynamic_sessions_auth: Annotated[Literal["auto", "token", "azure-identity"], BeforeValidator(lower)] = "auto"
    dynamic_sessions_token: str | None = None  # None: not set explicitly
    azure_credential: Annotated[Literal["default", "cli", "managed-identity"], BeforeValidator(lower)] = "default"
    azure_client_id: str | None = Field(None, validation_alias="AZURE_CLIENT_ID")


def _stripped_or_none(value: Any) -> Any:
    """An empty (or blank) variable is an unset one."""
    if isinstance(value, str):
        value = value.strip()
    return value if value not in ("", None) else None


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


Text = Annotated[str | None, BeforeValidator(_stripped_or_none)]
CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_list)]


class AuthSettings(FllmSettings):
    """Who issues the Core API's bearer tokens (services/auth/config.py): Entra ID when any of these is set,
    else the data dir's local issuer."""

    auth_tenant_id: Text = None  # the Core API app registration's tenant...
    auth_client_id: Text = None  # ...and client id: enough for Entra ID
    auth_instance: str = "https://login.microsoftonline.com/"
    auth_issuer: CommaList = ()  # overrides of the tenant's issuers, audiences and keys
    auth_audience: CommaList = ()
    auth_jwks_url: Text = None  # https (plain http only on loopback: AuthConfig.check)
    auth_jwks_file: Annotated[Path | None, BeforeValidator(_stripped_or_none)] = None
    auth_required_scope: Text = "Data.Read"  # in scp or roles; empty: none required

    @field_validator("auth_instance", mode="before")
    @classmethod
    def _https(cls, url: Any) -> Any:
        url = (url.strip() or "https://login.microsoftonline.com/") if isinstance(url, str) else url
        if isinstance(url, str) and not url.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return url.rstrip("/") + "/" if isinstance(url, str) else url

    @field_validator("auth_jwks_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url and not url.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return url

    @property
    def entra(self) -> bool:
        """Anything but the local issuer configured."""
        return bool(self.auth_tenant_id or self.auth_jwks_url or self.auth_jwks_file
                    or self.auth_issuer or self.auth_audience)


class CoreApiClientSettings(FllmSettings):
    """The bearer token a client of the Core API sends (services/auth/client_tokens.py)."""

    core_api_token: Text = None  # a token as given (e.g. from az account get-access-token)
    auth_client_scope: Text = None  # with Entra ID: the scope to ask for (None: api://{client id}/.default)


class CodeSessionApiSettings(FllmSettings):
    """The Code Session API's own bearer check (services/code_session_api/auth.py)."""

    # bearer: FLLM_DYNAMIC_SESSIONS_TOKEN required on every route but /status; none: no check (a developer's
    # own container behind an endpoint override)
    code_session_api_auth: Annotated[Literal["bearer", "none"], BeforeValidator(lambda v: lower(v) or "bearer")] = (
        "bearer")
