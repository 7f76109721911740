"""Settings of the service process itself: storage, request limits, the agent catalog, telemetry switches."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PositiveInt, field_validator

from services.common.settings.base import FllmSettings, lower, upper
from services.common.settings.chain import DEFAULT_INSTANCE_ID


class StoreSettings(FllmSettings):
    # FULL: an fsync per commit; NORMAL: commits survive a killed process, not a power loss.
    sqlite_synchronous: Annotated[Literal["NORMAL", "FULL", "EXTRA"], BeforeValidator(upper)] = "FULL"
    # FLLM_DATABASE_URL: PostgreSQL for the State, Context and Core stores (replicas share it); unset: SQLite
    database_url: Annotated[str | None, BeforeValidator(lambda url: url or None)] = None

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return url


class RequestLimits(FllmSettings):
    max_json_body_bytes: PositiveInt = 16 * 1024 * 1024  # the largest legitimate body carries 4 MiB of code


class AgentSettings(FllmSettings):
    agents: list[dict[str, Any]] | None = None  # FLLM_AGENTS: a JSON list of agents, replacing embedded ones by name


class TelemetrySwitches(FllmSettings):
    """What telemetry/setup.py and services/common/service.py read of a service's own process."""

    telemetry_file: bool = True  # FLLM_TELEMETRY_FILE: OTLP JSON lines in <data dir>/traces.jsonl
    version: str = "0.1.0"  # FLLM_VERSION -> service.version
    environment: str = "local"  # FLLM_ENVIRONMENT -> deployment.environment.name
    instance_id: Annotated[str, BeforeValidator(lower)] = Field(DEFAULT_INSTANCE_ID, min_length=1)
    data_dir: Path = Path(".callstack")
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(upper)] = "WARNING"
    port: Annotated[int, Field(ge=0, lt=65536)] | None = None  # FLLM_PORT: else the registry's default port
    fd: Annotated[int, Field(ge=0)] | None = None  # FLLM_FD: a listening socket inherited from the launcher
    # FLLM_PARENT_PID: the launcher that started this service (callstack up/demo/bench, the tests): once it is
    # gone, killed say, the service stops as on SIGTERM instead of holding its port with nobody to stop it
    parent_pid: Annotated[int, Field(ge=1)] | None = None
    # FLLM_TELEMETRY_HASH_KEY: the key ids on spans are hashed with (None or empty: a random one per process).
    # Any length: a key shorter than 16 characters is used with a warning (telemetry/id_hash.py), since a span
    # is no place to fail a request.
    telemetry_hash_key: Annotated[str | None, BeforeValidator(lambda key: key or None)] = None
    http_transport: Annotated[Literal["aiohttp", "httpx"], BeforeValidator(lower)] = "aiohttp"  # the hops' client
    # uvicorn's loop and parser: uvloop/httptools, or the pure-Python asyncio/h11 (None: per service)
    loop: Annotated[Literal["uvloop", "asyncio"], BeforeValidator(lower)] | None = None
    http_parser: Annotated[Literal["httptools", "h11"], BeforeValidator(lower)] = "httptools"
    otlp_schedule_delay_ms: PositiveInt | None = None  # FLLM_OTLP_SCHEDULE_DELAY_MS: the OTLP span batches
