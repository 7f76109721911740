"""What every hop of the chain reads: instance, data folder, next hops' URLs and keys, timeouts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BeforeValidator, Field, PositiveFloat, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from services.common.settings.base import EnvSource, FllmSettings, environment, lower
from services.registry import HOPS

DEFAULT_INSTANCE_ID = "00000000-0000-0000-0000-000000000001"
_HOP_MAPS = ("urls", "api_keys")


def _http_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError("must be an http(s) URL")
    return url.rstrip("/")


class _HopVariables(PydanticBaseSettingsSource):
    """FLLM_<PACKAGE>_URL and each hop's key variable, into the ``urls`` and ``api_keys`` maps."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        env = environment()
        urls = {hop.package: env[hop.url_env] for hop in HOPS.values() if env.get(hop.url_env)}
        keys = {hop.package: env[var] for hop in HOPS.values() if (var := hop.api_key_env) and env.get(var)}
        return {name: values for name, values in (("urls", urls), ("api_keys", keys)) if values}


class _Env(EnvSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name in _HOP_MAPS:  # no FLLM_URLS: only the per-hop variables
            return None, field_name, False
        return super().get_field_value(field, field_name)


class Settings(FllmSettings):
    """The chain settings every service reads (``Settings()`` or ``Settings.from_env()``)."""

    map_variables: ClassVar[dict[str, Callable[..., str]]] = {
        "urls": lambda package, *_: HOPS[package].url_env if package in HOPS else f"FLLM_{package.upper()}_URL",
        "api_keys": lambda package, *_: HOPS[package].api_key_env if package in HOPS else "api_keys",
    }

    instance_id: Annotated[str, BeforeValidator(lower)] = Field(DEFAULT_INSTANCE_ID, min_length=1)
    data_dir: Path = Path(".callstack")
    host: str = "127.0.0.1"
    gatekeeper: Annotated[Literal["bypass", "required"], BeforeValidator(lower)] = "bypass"
    urls: dict[str, Annotated[str, AfterValidator(_http_url)]] = Field(default_factory=dict)  # package -> base URL
    api_keys: dict[str, str] = Field(default_factory=dict)  # package -> X-API-KEY
    dynamic_sessions_token: str = "dev-dynamic-sessions-token"
    capture_prompts: bool = False
    model: Annotated[Literal["local-deterministic", "azure-openai"], BeforeValidator(lower)] = "local-deterministic"
    code_timeout_s: PositiveFloat = 60.0  # the Python tool -> Context API timeout of the original
    hop_timeout_s: PositiveFloat = 30.0
    operation_stale_after_s: PositiveFloat = 120.0
    poll_failure_limit_s: PositiveFloat = 20.0  # Core: status unreadable this long ends it Failed

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _HopVariables(settings_cls), _Env(settings_cls)

    @field_validator("urls")
    @classmethod
    def _every_hop_has_a_url(cls, urls: dict[str, str]) -> dict[str, str]:
        return {package: hop.default_url for package, hop in HOPS.items()} | urls

    @field_validator("api_keys")
    @classmethod
    def _every_internal_hop_has_a_key(cls, keys: dict[str, str]) -> dict[str, str]:
        return {p: hop.default_api_key for p, hop in HOPS.items() if hop.api_key_env} | keys

    def port_of(self, package: str) -> int:
        return int(self.urls[package].rsplit(":", 1)[1].split("/")[0])

    def timeout_of(self, package: str) -> float:
        """How long a caller waits for ``package``: its share of the timeout ladder."""
        share = HOPS[package].timeout_share
        if share is None:
            raise ValueError(f"{package} has no share of the timeout ladder (its callers set their own)")
        return self.hop_timeout_s * share


SERVICE_PORTS: dict[str, int] = {package: hop.port for package, hop in HOPS.items()}
# Keys of the internal hops that check X-API-KEY: package -> environment variable.
API_KEY_ENV: dict[str, str] = {package: hop.api_key_env for package, hop in HOPS.items() if hop.api_key_env}


def service_name(package: str) -> str:
    """service.name of a package, FoundationaLLM's (``core_api`` -> ``CoreAPI``)."""
    return HOPS[package].service_name if package in HOPS else package.replace("_", "-")


def deployed_name(package: str) -> str:
    """A package's name in deployments: compose service, host, log file (``core_api`` -> ``core-api``)."""
    return HOPS[package].name if package in HOPS else package.replace("_", "-")


def url_env(package: str) -> str:
    return HOPS[package].url_env if package in HOPS else f"FLLM_{package.upper()}_URL"
