"""The User Portal web app (port 3000): the page at ``/`` and the JSON routes it talks to.

The page never calls Core itself: ``POST /api/completions`` submits through PortalClient, so the
operation's root span (``portal.submit``) and ``portal.wait_for_result`` are the portal service's;
a background wait keeps them open until the operation ends. ``GET /api/completions/{operationId}``
answers from that wait (holding the request up to ``?wait=`` seconds for a change) or, for an
operation the portal does not wait on, with one long-poll of Core's status route.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from opentelemetry import context
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.auth.client_tokens import bearer_source
from services.common.errors import ServiceError
from services.common.service import create_service, start_telemetry
from services.common.settings import PortalSettings, Settings
from services.portal import page
from services.portal.client import DEFAULT_AGENT, PortalClient
from services.portal.errors import CoreApiError, CoreUnavailableError, PortalError
from services.portal.files import router as files_router
from services.portal.operation import OperationView, view_of
from services.portal.traces import TraceStore
from services.portal.traces import router as traces_router
from services.portal.waiters import Waiters
from telemetry import conventions as c
from telemetry.context import annotate

PACKAGE = "portal"
TITLE = "FoundationaLLM User Portal"
MAX_PAGE_WAIT_S = 10.0
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


@dataclass(frozen=True)
class PortalConfig:
    jaeger_url: str | None = None
    wait_timeout_s: float = 1800.0  # Core's own hard stop for an operation is 30 minutes
    max_in_flight: int = 256

    @classmethod
    def from_env(cls) -> PortalConfig:
        own = PortalSettings()
        return cls(jaeger_url=own.jaeger_url, wait_timeout_s=own.portal_wait_timeout_s,
                   max_in_flight=own.portal_max_waits)


class AskBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=262_144)
    agent_name: str = Field(default=DEFAULT_AGENT, pattern=ID_PATTERN)
    session_id: str | None = Field(default=None, pattern=ID_PATTERN)

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the prompt is blank")
        return value


OperationId = Annotated[str, Path(pattern=ID_PATTERN)]
# The trace viewer reads traces; its own requests are not traced (they would fill the latency report).
TRACE_VIEWER_PATHS = ("/traces", "/api/traces", "/api/latency")
router = APIRouter()


def _client(request: Request) -> PortalClient:
    return request.app.state.portal_client


def _answer(
    view: OperationView, client: PortalClient, status_code: int = 200, version: int | None = None
) -> JSONResponse:
    body: dict[str, Any] = view.to_json()
    if version is not None:
        body["version"] = version
    link = client.jaeger_link(view.trace_id)
    if link:
        body["jaeger_url"] = link
    return JSONResponse(body, status_code=status_code)


def _core_failure(error: PortalError) -> ServiceError:
    if isinstance(error, CoreUnavailableError):
        return ServiceError(503, str(error))
    if isinstance(error, CoreApiError) and error.status_code in {404, 429}:
        return ServiceError(error.status_code, str(error))
    return ServiceError(502, str(error))


def _page(render: Callable[[str], str]) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    headers = {
        "Content-Security-Policy": page.content_security_policy(nonce),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    return HTMLResponse(render(nonce), headers=headers)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    return _page(page.render)


@router.get("/traces", response_class=HTMLResponse, include_in_schema=False)
async def traces_page() -> HTMLResponse:
    return _page(page.render_traces)


@router.post("/api/completions", status_code=202)
async def submit(body: AskBody, request: Request) -> JSONResponse:
    client = _client(request)
    annotate({c.ATTR_AGENT_NAME: body.agent_name})
    try:
        operation = await client.submit(body.prompt, body.agent_name, body.session_id)
    except PortalError as error:
        raise _core_failure(error) from error
    view = view_of(operation)
    annotate({c.ATTR_OPERATION_ID: view.operation_id})
    tracked = request.app.state.waiters.track(view.operation_id, view)
    return _answer(view, client, 202, 0 if tracked else None)


@router.get("/api/completions/{operation_id}")
async def status(
    operation_id: OperationId,
    request: Request,
    wait: Annotated[float, Query(ge=0, le=60)] = 0,
    seen: Annotated[int | None, Query(ge=0)] = None,
) -> JSONResponse:
    """``wait``: hold the answer up to that many seconds (at most 10) until the status changes;
    ``seen``: the ``version`` of the caller's last answer, so a change it missed is answered at once."""
    client = _client(request)
    annotate({c.ATTR_OPERATION_ID: operation_id})
    wait_s = min(wait, MAX_PAGE_WAIT_S)
    tracked = await request.app.state.waiters.view(operation_id, wait_s, seen)
    if tracked is not None:
        view, version = tracked
        return _answer(view, client, version=version)
    try:
        body = await client.poll(operation_id, wait_s=wait_s, ctx=context.get_current())
    except PortalError as error:
        raise _core_failure(error) from error
    return _answer(view_of(body, operation_id), client)


def create_app(settings: Settings | None = None, config: PortalConfig | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    config = config or PortalConfig.from_env()
    start_telemetry(PACKAGE, settings)  # before the client exists: the httpx instrumentation needs it
    client = PortalClient(
        settings.urls["core_api"],
        settings.instance_id,
        timeout_s=config.wait_timeout_s,
        jaeger_url=config.jaeger_url,
        capture_prompts=settings.capture_prompts,
        bearer=bearer_source(settings.data_dir),  # the page's submissions go to Core as the portal's user
    )
    waiters = Waiters(client, max_in_flight=config.max_in_flight, timeout_s=config.wait_timeout_s)
    app = create_service(PACKAGE, settings, title=TITLE, on_shutdown=[waiters.stop, client.aclose],
                         untraced_prefixes=TRACE_VIEWER_PATHS)
    app.state.portal_client = client
    app.state.waiters = waiters
    app.state.trace_store = TraceStore(settings.data_dir, config.jaeger_url)
    app.state.trace_store.start()
    app.include_router(router)
    app.include_router(traces_router)
    app.include_router(files_router)
    return app
