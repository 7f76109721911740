"""The code session pools as real processes on https (``Chain(tls=True)``, what ``callstack up --tls`` starts),
for clients that are not ours."""

from __future__ import annotations

import secrets
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.common.tls import client_context
from services.launcher import Chain
from tests.wait import WaitTimeout, wait_until

POOLS = ("dynamic_sessions", "code_session_api")
# The pool's timeout for executions that name none (these clients never name one): short enough for a test,
# long enough for a first `import matplotlib` on a busy machine.
DEFAULT_TIMEOUT_S = 10


@dataclass(frozen=True)
class HttpsPools:
    chain: Chain
    token: str
    ca_file: Path
    trusting: ssl.SSLContext

    def url(self, package: str = "dynamic_sessions") -> str:
        return self.chain.url(package)


def _warm(url: str, verify: ssl.SSLContext) -> bool:
    try:
        answer = httpx.get(f"{url}/status", timeout=1, verify=verify)
        return answer.json().get("warm_pool", {}).get("ready", 0) >= 1
    except (httpx.HTTPError, ValueError):
        return False


@pytest.fixture(scope="session")
def https_pools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsPools]:
    token = secrets.token_urlsafe(24)
    chain = Chain(tmp_path_factory.mktemp("https-pools"), ephemeral_ports=True, packages=POOLS, tls=True, env={
        "FLLM_DYNAMIC_SESSIONS_TOKEN": token,
        "FLLM_CODE_POOL_SIZE": "1",
        "FLLM_CODE_DEFAULT_TIMEOUT_S": str(DEFAULT_TIMEOUT_S),
    }).start()
    try:
        assert chain.local_tls is not None
        trusting = client_context(chain.local_tls.ca_file)
        for package in POOLS:
            try:
                wait_until(lambda p=package: _warm(chain.url(p), trusting), f"{package}'s warm pool", 30, every_s=0.05)
            except WaitTimeout:
                raise RuntimeError(f"{package} was not ready in 30 s:\n{chain.log_tail(package)}") from None
        yield HttpsPools(chain, token, chain.local_tls.ca_file, trusting)
    finally:
        chain.stop()
