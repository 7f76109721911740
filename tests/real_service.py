"""One service of the chain as a real process on a loopback port, for the tests of a single hop."""

from __future__ import annotations

from pathlib import Path

import httpx

from services.launcher import Chain
from tests.wait import WaitTimeout, wait_until


def start_code_service(package: str, data_dir: Path, token: str, **env: str) -> Chain:
    """``dynamic_sessions`` or ``code_session_api``, with one warm interpreter ready before it returns."""
    chain = Chain(data_dir, ephemeral_ports=True, packages=(package,), env={
        "FLLM_DYNAMIC_SESSIONS_TOKEN": token,
        "FLLM_CODE_POOL_SIZE": "1",
        "FLLM_TELEMETRY_FILE": "on",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        **env,
    }).start()
    try:
        wait_until(lambda: warm_pool_ready(chain.url(package)), f"{package}'s warm pool", 30, every_s=0.05)
    except WaitTimeout:
        chain.stop()
        raise RuntimeError(f"{package}'s warm pool was not ready in 30 s:\n{chain.log_tail(package)}") from None
    return chain


def warm_pool_ready(url: str) -> bool:
    """One interpreter of the service's warm pool is ready."""
    try:
        return httpx.get(f"{url}/status", timeout=1).json().get("warm_pool", {}).get("ready", 0) >= 1
    except (httpx.HTTPError, ValueError):
        return False
