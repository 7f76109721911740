"""Every FLLM_* variable, read through typed settings classes (pydantic-settings) with the README's defaults.

A bad value stops the service at startup with a ``SettingsError`` that names the variable. The chain's
hops themselves (ports, URL and key variables, timeout shares) come from services/registry.py.
"""

from services.common.settings.base import FllmSettings, SettingsError
from services.common.settings.chain import (
    API_KEY_ENV,
    DEFAULT_INSTANCE_ID,
    SERVICE_PORTS,
    Settings,
    deployed_name,
    service_name,
    url_env,
)
from services.common.settings.components import (
    MAX_EXECUTION_TIMEOUT_S,
    AuthSettings,
    AzureOpenAISettings,
    CodeSessionApiSettings,
    ContextApiSettings,
    CoreApiClientSettings,
    DynamicSessionsAuthSettings,
    PortalSettings,
    parse_endpoints,
)
from services.common.settings.process import AgentSettings, RequestLimits, StoreSettings, TelemetrySwitches
from services.common.settings.tls import TlsSettings

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_INSTANCE_ID",
    "MAX_EXECUTION_TIMEOUT_S",
    "SERVICE_PORTS",
    "AgentSettings",
    "AuthSettings",
    "AzureOpenAISettings",
    "CodeSessionApiSettings",
    "ContextApiSettings",
    "CoreApiClientSettings",
    "DynamicSessionsAuthSettings",
    "FllmSettings",
    "PortalSettings",
    "RequestLimits",
    "Settings",
    "SettingsError",
    "StoreSettings",
    "TelemetrySwitches",
    "TlsSettings",
    "deployed_name",
    "parse_endpoints",
    "service_name",
    "url_env",
]
