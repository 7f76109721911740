"""The chain's hops, in one place: settings, the launcher, the timeout ladder, telemetry names and the
tests' hop lists all derive from ``HOPS``. Adding a hop starts here (its package, port, next hops).

Each hop has two names: ``service_name``, what observers read (``service.name`` with ``service.namespace``
``FoundationaLLM``, the failed hop of an operation, error messages, metric and alert labels), FoundationaLLM's
own where the original has the service; and ``name``, what deployments use (compose services, Kubernetes
objects, DNS hosts and so ``server.address``, log files).

Pure data (pydantic and the standard library only): telemetry and the tests import it too.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field


class Hop(BaseModel):
    model_config = ConfigDict(frozen=True)

    package: str  # under services/; ``python -m services.<package>`` runs it
    name: str  # deployment name: compose service, Kubernetes objects, DNS host, log file
    service_name: str  # telemetry name: service.name, failed hop, metric and alert labels
    port: int = Field(gt=0, lt=65536)
    next_hops: tuple[str, ...] = ()  # packages it calls
    api_key_env: str | None = None  # the X-API-KEY it checks, for internal hops
    # How long a caller waits for it, in FLLM_HOP_TIMEOUT_S: each caller's share exceeds its callees', so a
    # slow inner hop fails as itself, not as the hop that called it. None: the caller has its own setting.
    timeout_share: int | None = None
    bypassable: bool = False  # skipped unless configured (FLLM_GATEKEEPER=required)
    alternative_to: str | None = None  # serves the same calls as that hop, for other agents

    @property
    def url_env(self) -> str:
        return f"FLLM_{self.package.upper()}_URL"

    @property
    def default_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def default_api_key(self) -> str:
        return f"dev-{self.package.replace('_', '-')}-key"


def _hops(*hops: Hop) -> dict[str, Hop]:
    return {hop.package: hop for hop in hops}


HOPS: dict[str, Hop] = _hops(
    Hop(package="portal", name="portal", service_name="UserPortal", port=3000, next_hops=("core_api",)),
    # Its caller is the user's portal, with a request timeout of its own.
    Hop(package="core_api", name="core-api", service_name="CoreAPI", port=63280,
        next_hops=("gatekeeper_api", "orchestration_api", "context_api"),  # context_api: the files route
        api_key_env="FLLM_CORE_API_KEY"),
    Hop(package="gatekeeper_api", name="gatekeeper-api", service_name="GatekeeperAPI", port=5295,
        next_hops=("orchestration_api",), api_key_env="FLLM_GATEKEEPER_API_KEY", timeout_share=4, bypassable=True),
    Hop(package="orchestration_api", name="orchestration-api", service_name="OrchestrationAPI", port=5810,
        next_hops=("langchain_api", "state_api", "context_api"), api_key_env="FLLM_ORCHESTRATION_API_KEY",
        timeout_share=3),
    # LangChain writes the status to State API before it answers 202: twice State's share.
    Hop(package="langchain_api", name="langchain-api", service_name="LangChainAPI", port=8765,
        next_hops=("state_api", "context_api"), api_key_env="FLLM_LANGCHAIN_API_KEY", timeout_share=2),
    Hop(package="state_api", name="state-api", service_name="StateAPI", port=5014,
        api_key_env="FLLM_STATE_API_KEY", timeout_share=1),
    # executeCode has its own timeout (FLLM_CODE_TIMEOUT_S); the share is for the other routes.
    Hop(package="context_api", name="context-api", service_name="ContextAPI", port=5004,
        next_hops=("dynamic_sessions", "code_session_api"), api_key_env="FLLM_CONTEXT_API_KEY", timeout_share=1),
    # The code session pools: the Context API waits FLLM_CONTEXT_POOL_TIMEOUT_S for them. Not
    # "DynamicSessionsEmulator": the hop a failure names is the pool, and the Context API may call a real
    # Azure pool (which sends no telemetry), so the emulator's spans are the only ones under that name.
    Hop(package="dynamic_sessions", name="dynamic-sessions", service_name="DynamicSessions", port=6000),
    Hop(package="code_session_api", name="code-session-api", service_name="PythonCodeSessionAPI", port=8000,
        alternative_to="dynamic_sessions"),
)


def start_order(hops: dict[str, Hop] = HOPS) -> tuple[str, ...]:
    """Callees before callers (so a caller's first request finds its next hop up), else registry order."""
    started: list[str] = []
    while len(started) < len(hops):
        ready = [p for p, hop in hops.items() if p not in started and set(hop.next_hops) <= set(started)]
        if not ready:
            raise ValueError(f"the hops call each other in a cycle: {sorted(set(hops) - set(started))}")
        started.extend(ready)
    return tuple(started)


def called(hops: dict[str, Hop] = HOPS) -> tuple[str, ...]:
    """Hops some other hop calls (everything but the portal): the proxied, fuzzed and alerted ones."""
    callees = {p for hop in hops.values() for p in hop.next_hops}
    return tuple(p for p in hops if p in callees)


def default_path(start: str = "portal", hops: dict[str, Hop] = HOPS) -> tuple[str, ...]:
    """The hops one default completion crosses: no bypassed hop, no alternative provider."""
    seen: list[str] = []

    def visit(packages: Iterable[str]) -> None:
        for package in packages:
            hop = hops[package]
            if package in seen:
                continue
            if hop.bypassable or hop.alternative_to:
                visit(hops[package].next_hops if hop.bypassable else ())
                continue
            seen.append(package)
            visit(hop.next_hops)

    visit((start,))
    return tuple(p for p in hops if p in seen)


START_ORDER = start_order()
