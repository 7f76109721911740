"""Configuration every service reads from its environment (FLLM_* variables), with local defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_INSTANCE_ID = "00000000-0000-0000-0000-000000000001"

# package name -> (default port, environment variable with the service's base URL)
SERVICE_PORTS: dict[str, int] = {
    "portal": 3000,
    "core_api": 63280,
    "gatekeeper_api": 5295,
    "orchestration_api": 5810,
    "langchain_api": 8765,
    "state_api": 5014,
    "context_api": 5004,
    "dynamic_sessions": 6000,
    "code_session_api": 8000,
}

# Keys of the internal hops that check X-API-KEY (environment variable -> local dev default).
API_KEY_ENV: dict[str, str] = {
    "core_api": "FLLM_CORE_API_KEY",
    "gatekeeper_api": "FLLM_GATEKEEPER_API_KEY",
    "orchestration_api": "FLLM_ORCHESTRATION_API_KEY",
    "langchain_api": "FLLM_LANGCHAIN_API_KEY",
    "state_api": "FLLM_STATE_API_KEY",
    "context_api": "FLLM_CONTEXT_API_KEY",
}


def service_name(package: str) -> str:
    """service.name of a package: ``core_api`` -> ``core-api``."""
    return package.replace("_", "-")


def url_env(package: str) -> str:
    return f"FLLM_{package.upper()}_URL"


@dataclass(frozen=True)
class Settings:
    instance_id: str = DEFAULT_INSTANCE_ID
    data_dir: Path = Path(".callstack")
    host: str = "127.0.0.1"
    gatekeeper: str = "bypass"  # bypass | required
    urls: dict[str, str] = field(default_factory=dict)
    api_keys: dict[str, str] = field(default_factory=dict)
    dynamic_sessions_token: str = "dev-dynamic-sessions-token"
    capture_prompts: bool = False
    model: str = "local-deterministic"
    code_timeout_s: float = 60.0  # the Python tool -> Context API timeout of the original
    hop_timeout_s: float = 30.0
    operation_stale_after_s: float = 120.0

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        urls = {
            pkg: env.get(url_env(pkg), f"http://127.0.0.1:{port}").rstrip("/")
            for pkg, port in SERVICE_PORTS.items()
        }
        keys = {pkg: env.get(var, f"dev-{service_name(pkg)}-key") for pkg, var in API_KEY_ENV.items()}
        return cls(
            instance_id=env.get("FLLM_INSTANCE_ID", DEFAULT_INSTANCE_ID).lower(),
            data_dir=Path(env.get("FLLM_DATA_DIR", ".callstack")),
            host=env.get("FLLM_HOST", "127.0.0.1"),
            gatekeeper=env.get("FLLM_GATEKEEPER", "bypass"),
            urls=urls,
            api_keys=keys,
            dynamic_sessions_token=env.get("FLLM_DYNAMIC_SESSIONS_TOKEN", "dev-dynamic-sessions-token"),
            capture_prompts=env.get("FLLM_CAPTURE_PROMPTS", "false").lower() == "true",
            model=env.get("FLLM_MODEL", "local-deterministic"),
            code_timeout_s=float(env.get("FLLM_CODE_TIMEOUT_S", "60")),
            hop_timeout_s=float(env.get("FLLM_HOP_TIMEOUT_S", "30")),
            operation_stale_after_s=float(env.get("FLLM_OPERATION_STALE_AFTER_S", "120")),
        )

    def port_of(self, package: str) -> int:
        return int(self.urls[package].rsplit(":", 1)[1].split("/")[0])
