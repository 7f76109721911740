"""The typed settings layer: the README's defaults, environment overrides, and a bad value refused with
an error that names its variable."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from services.code_execution.config import CodeExecutionSettings
from services.common.settings import (
    AgentSettings,
    AuthSettings,
    AzureOpenAISettings,
    CodeSessionApiSettings,
    ContextApiSettings,
    CoreApiClientSettings,
    DynamicSessionsAuthSettings,
    FllmSettings,
    PortalSettings,
    RequestLimits,
    Settings,
    SettingsError,
    StoreSettings,
    TelemetrySwitches,
    TlsSettings,
)
from services.registry import HOPS

README = Path(__file__).resolve().parents[2] / "README.md"
CLASSES: list[type[FllmSettings]] = [Settings, PortalSettings, AzureOpenAISettings, ContextApiSettings,
                                     DynamicSessionsAuthSettings, StoreSettings, RequestLimits, AgentSettings,
                                     TelemetrySwitches, AuthSettings, CoreApiClientSettings, CodeSessionApiSettings,
                                     CodeExecutionSettings, TlsSettings]
# Read elsewhere: the collector's tail sampling (compose only), the tracing-cost benchmark's switch and the
# browser tests' screenshot folder.
ELSEWHERE = re.compile(r"FLLM_(TRACE_SAMPLING_PERCENTAGE|SLOW_TRACE_MS|TAIL_DECISION_WAIT|TELEMETRY_COST"
                       r"|SCREENSHOT_DIR)$")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FLLM_") or name in ("CONTEXTAPI_CODEEXECUTION_CUSTOMCONTAINER", "AZURE_CLIENT_ID"):
            monkeypatch.delenv(name)


def variables(cls: type[FllmSettings]) -> set[str]:
    return {cls.variable(name) for name in cls.model_fields}


def test_defaults_are_the_readmes() -> None:
    settings = Settings()
    assert settings.instance_id == "00000000-0000-0000-0000-000000000001"
    assert (settings.data_dir, settings.host, settings.gatekeeper) == (Path(".callstack"), "127.0.0.1", "bypass")
    assert (settings.model, settings.capture_prompts) == ("local-deterministic", False)
    assert (settings.hop_timeout_s, settings.code_timeout_s, settings.operation_stale_after_s) == (30, 60, 120)
    assert settings.dynamic_sessions_token == "dev-dynamic-sessions-token"
    assert settings.urls == {p: f"http://127.0.0.1:{hop.port}" for p, hop in HOPS.items()}
    assert settings.api_keys["state_api"] == "dev-state-api-key"
    assert PortalSettings().model_dump() == {"jaeger_url": None, "portal_wait_timeout_s": 1800,
                                             "portal_max_waits": 256}
    context = ContextApiSettings()
    assert (context.context_pool_timeout_s, context.context_execution_timeout_s) == (600, 220)
    assert (context.context_max_download_files, context.context_max_download_mb) == (20, 32)
    auth = DynamicSessionsAuthSettings()
    assert (auth.dynamic_sessions_auth, auth.azure_credential, auth.dynamic_sessions_token) == ("auto", "default", None)
    assert StoreSettings().sqlite_synchronous == "FULL"
    assert RequestLimits().max_json_body_bytes == 16 * 1024 * 1024
    assert AgentSettings().agents is None
    switches = TelemetrySwitches()
    assert (switches.telemetry_file, switches.environment, switches.log_level) == (True, "local", "WARNING")
    assert switches.instance_id == settings.instance_id  # never an empty resource attribute
    assert switches.telemetry_hash_key is None
    auth = AuthSettings()
    assert (auth.entra, auth.auth_instance, auth.auth_required_scope) == (
        False, "https://login.microsoftonline.com/", "Data.Read")
    assert CoreApiClientSettings().model_dump() == {"core_api_token": None, "auth_client_scope": None}
    assert CodeSessionApiSettings().code_session_api_auth == "bearer"
    code = CodeExecutionSettings()
    assert (code.pool_size, code.memory_mb, code.cpu_cores, code.disk_mb, code.sandbox) == (4, 1024, 1.0, 500, "auto")


def test_the_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"FLLM_INSTANCE_ID": "ABC", "FLLM_GATEKEEPER": "Required", "FLLM_HOP_TIMEOUT_S": "2.5",
                        "FLLM_STATE_API_URL": "http://state:5014/", "FLLM_STATE_API_KEY": "k",
                        "FLLM_CAPTURE_PROMPTS": "true", "FLLM_SQLITE_SYNCHRONOUS": "normal",
                        "FLLM_TELEMETRY_FILE": "off", "FLLM_AGENTS": '[{"name": "a"}]', "FLLM_FD": "7",
                        "CONTEXTAPI_CODEEXECUTION_CUSTOMCONTAINER": '{"Endpoints": {"Python": ["http://c/"]}}',
                        "FLLM_DYNAMIC_SESSIONS_TOKEN": ""}.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert (settings.instance_id, settings.gatekeeper, settings.hop_timeout_s) == ("abc", "required", 2.5)
    assert settings.urls["state_api"] == "http://state:5014" and settings.api_keys["state_api"] == "k"
    assert settings.urls["core_api"] == "http://127.0.0.1:63280" and settings.capture_prompts
    assert Settings(urls={"core_api": "http://core:1"}).urls["state_api"] == "http://state:5014"  # merged
    assert StoreSettings().sqlite_synchronous == "NORMAL"
    assert TelemetrySwitches().telemetry_file is False and TelemetrySwitches().fd == 7
    assert AgentSettings().agents == [{"name": "a"}]
    assert ContextApiSettings().custom_container_endpoints == {"Python": ["http://c"]}
    assert DynamicSessionsAuthSettings().dynamic_sessions_token == ""  # set, though empty: token mode


def test_a_short_hash_key_is_used_and_an_empty_one_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLLM_TELEMETRY_HASH_KEY", "short")  # a warning at the first hash, never a failure
    assert TelemetrySwitches().telemetry_hash_key == "short"
    monkeypatch.setenv("FLLM_TELEMETRY_HASH_KEY", "")
    assert TelemetrySwitches().telemetry_hash_key is None


def test_auth_settings_read_a_given_mapping_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLLM_AUTH_TENANT_ID", "from-the-environment")
    given = AuthSettings.from_mapping({"FLLM_AUTH_ISSUER": " a, b ,", "FLLM_AUTH_REQUIRED_SCOPE": "",
                                       "FLLM_AUTH_INSTANCE": "https://login.microsoftonline.us"})
    assert (given.auth_tenant_id, given.auth_issuer, given.auth_required_scope) == (None, ("a", "b"), None)
    assert given.auth_instance == "https://login.microsoftonline.us/" and given.entra
    assert AuthSettings().auth_tenant_id == "from-the-environment"  # os.environ again outside from_mapping


@pytest.mark.parametrize(("cls", "variable", "value"), [
    (Settings, "FLLM_HOP_TIMEOUT_S", "soon"),
    (Settings, "FLLM_HOP_TIMEOUT_S", "-1"),
    (Settings, "FLLM_GATEKEEPER", "sometimes"),
    (Settings, "FLLM_MODEL", "gpt"),
    (Settings, "FLLM_CONTEXT_API_URL", "context-api:5004"),
    (PortalSettings, "FLLM_JAEGER_URL", "localhost:16686"),
    (PortalSettings, "FLLM_PORTAL_MAX_WAITS", "0"),
    (ContextApiSettings, "FLLM_CODE_INTERPRETER_ENDPOINTS", '{"Endpoints": ["x"]}'),
    (ContextApiSettings, "FLLM_CONTEXT_POOL_TIMEOUT_S", "forever"),
    (DynamicSessionsAuthSettings, "FLLM_DYNAMIC_SESSIONS_AUTH", "bogus"),
    (DynamicSessionsAuthSettings, "FLLM_AZURE_CREDENTIAL", "password"),
    (StoreSettings, "FLLM_SQLITE_SYNCHRONOUS", "OFF"),
    (RequestLimits, "FLLM_MAX_JSON_BODY_BYTES", "lots"),
    (AgentSettings, "FLLM_AGENTS", '{"name": "a"}'),
    (TelemetrySwitches, "FLLM_LOG_LEVEL", "loud"),
    (TelemetrySwitches, "FLLM_PORT", "70000"),
    (AuthSettings, "FLLM_AUTH_INSTANCE", "login.microsoftonline.com"),
    (AuthSettings, "FLLM_AUTH_JWKS_URL", "keys.example.com/jwks"),
    (CodeSessionApiSettings, "FLLM_CODE_SESSION_API_AUTH", "off"),
    (CodeExecutionSettings, "FLLM_CODE_DISK_MB", "lots"),
    (CodeExecutionSettings, "FLLM_CODE_SANDBOX", "docker"),
    (TelemetrySwitches, "FLLM_HTTP_TRANSPORT", "curl"),
])
def test_a_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch, cls: type[FllmSettings], variable: str,
                                        value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=rf"^{variable}: "):
        cls()


def test_secrets_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="FLLM_STATE_API_KEY") as error:
        Settings(api_keys={"state_api": 12345})
    assert "12345" not in str(error.value)


def test_azure_openai_needs_its_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="FLLM_AZURE_OPENAI_ENDPOINT"):
        AzureOpenAISettings()
    monkeypatch.setenv("FLLM_AZURE_OPENAI_ENDPOINT", "https://x.openai.azure.com")
    monkeypatch.setenv("FLLM_AZURE_OPENAI_API_KEY", "")
    azure = AzureOpenAISettings()
    assert (azure.azure_openai_deployment, azure.azure_openai_api_version) == ("gpt-4o", "2024-10-21")
    assert azure.azure_openai_api_key is None


def test_every_variable_the_readme_documents_is_read_by_a_settings_class() -> None:
    documented = set(re.findall(r"\bFLLM_[A-Z0-9_]*[A-Z0-9]\b", README.read_text()))
    known = set().union(*(variables(cls) for cls in CLASSES)) | {hop.url_env for hop in HOPS.values()}
    known |= {hop.api_key_env for hop in HOPS.values() if hop.api_key_env}
    missing = {name for name in documented - known if not ELSEWHERE.fullmatch(name)}
    assert not missing, f"documented but read by no settings class: {sorted(missing)}"
