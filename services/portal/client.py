"""PortalClient: the User Portal's api.ts in Python (submit, then poll the operation's status).

Used by the portal web app, the CLI and the benchmarks. Its spans (telemetry/conventions.py):

- ``portal.submit``: the root of the operation's trace (or a child of the caller's ``traceparent``),
  from the submission until this client sees the operation end; the POST carries its context, so
  Core and every hop after it join this trace.
- ``portal.wait_for_result``: child of ``portal.submit``, from the 202 until the end is seen.
- ``portal.poll``: one per status request, each the root of its OWN short trace with a span link to
  ``portal.submit``; hundreds of polls never bloat the operation's trace.

Waiting long-polls (``?wait=<s>``: Core answers when the operation ends, or after that many seconds);
against a server that answers at once, it sleeps an adaptive interval between polls instead.

    async with PortalClient(core_url, instance_id, jaeger_url=jaeger) as client:
        result = await client.ask("print(6 * 7)", agent_name="code-interpreter")
        print(result.status, result.answer, result.jaeger_link)
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from opentelemetry import baggage, context, trace
from opentelemetry.context import Context
from opentelemetry.propagate import inject
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode

from services.auth.client_tokens import BearerSource
from services.common.http import new_client
from services.portal.errors import CoreApiError, CoreUnavailableError, OperationTimeoutError, failed_response
from services.portal.operation import AdaptiveInterval, OperationView, view_of
from telemetry import conventions as c
from telemetry.context import annotate, context_from_traceparent, hop_span, record_failure, tracer

DEFAULT_AGENT = "code-interpreter"
_REMEMBERED_SUBMISSIONS = 10_000  # span contexts kept to link later polls of known operations


@dataclass(frozen=True)
class AskResult:
    operation_id: str
    status: str  # Completed | Failed
    answer: str
    status_message: str | None
    trace_id: str
    jaeger_link: str | None
    polls: int
    submit_ms: float
    total_ms: float
    failed_hop: str | None = None
    operation: dict[str, Any] = field(default_factory=dict, repr=False)  # the last LongRunningOperation


@dataclass
class _WaitState:
    operation_id: str
    body: dict[str, Any] | None  # the last LongRunningOperation seen
    polls: int = 0


@dataclass
class _Pending:
    """A submission whose ``portal.submit`` span stays open until its end is seen."""

    operation_id: str
    span: Span
    body: dict[str, Any]
    trace_id: str
    started: float  # time.monotonic() before the POST
    accepted_ns: int  # time.time_ns() at the 202
    submit_ms: float


class PortalClient:
    def __init__(
        self,
        core_url: str,
        instance_id: str,
        *,
        timeout_s: float = 300.0,
        jaeger_url: str | None = None,
        long_poll_s: float = 10.0,
        poll_initial_s: float = 0.005,
        poll_factor: float = 1.5,
        poll_cap_s: float = 0.25,
        request_timeout_s: float = 60.0,
        headers: Mapping[str, str] | None = None,
        capture_prompts: bool = False,
        bearer: BearerSource | None = None,
    ) -> None:
        self.core_url = core_url.rstrip("/")
        self.instance_id = instance_id.lower()
        self.timeout_s = timeout_s
        self.jaeger_url = jaeger_url.rstrip("/") if jaeger_url else None
        self.long_poll_s = long_poll_s
        self.request_timeout_s = request_timeout_s
        self.capture_prompts = capture_prompts
        self.bearer = bearer  # Core's Entra ID (or local issuer) token, sent on every call
        self._interval = (poll_initial_s, poll_factor, poll_cap_s)
        self._pending: dict[str, _Pending] = {}
        self._submissions: OrderedDict[str, SpanContext] = OrderedDict()
        self._http = new_client(
            headers=dict(headers or {}),
            timeout=httpx.Timeout(request_timeout_s, connect=min(request_timeout_s, 5.0)),
            limits=httpx.Limits(max_connections=500, max_keepalive_connections=100, keepalive_expiry=2.0),
        )

    async def __aenter__(self) -> PortalClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for operation_id in list(self._pending):
            self.abandon(operation_id, "the client was closed before the operation ended")
        await self._http.aclose()

    @property
    def operations_url(self) -> str:
        return f"{self.core_url}/instances/{self.instance_id}/async-completions"

    def jaeger_link(self, trace_id: str | None) -> str | None:
        return f"{self.jaeger_url}/trace/{trace_id}" if self.jaeger_url and trace_id else None

    # --- the whole round trip ---

    async def ask(
        self,
        prompt: str,
        agent_name: str = DEFAULT_AGENT,
        session_id: str | None = None,
        operation_id: str | None = None,
        traceparent: str | None = None,
        timeout_s: float | None = None,
    ) -> AskResult:
        body = await self.submit(prompt, agent_name, session_id, operation_id, traceparent)
        return await self.wait(body["operation_id"], timeout_s=timeout_s)

    # --- submission ---

    async def submit(
        self,
        prompt: str,
        agent_name: str = DEFAULT_AGENT,
        session_id: str | None = None,
        operation_id: str | None = None,
        traceparent: str | None = None,
    ) -> dict[str, Any]:
        """POST the completion request; returns Core's 202 LongRunningOperation. ``portal.submit`` stays
        open until ``wait`` (or ``abandon``) for this operation id ends it."""
        session_id = session_id or str(uuid.uuid4())  # Core fails an operation without a conversation
        span = tracer().start_span(
            c.SPAN_PORTAL_SUBMIT,
            context=context_from_traceparent(traceparent or ""),  # empty context: a new root
            kind=SpanKind.INTERNAL,
        )
        annotate(self._submit_attributes(prompt, agent_name, session_id, operation_id), span)
        started = time.monotonic()
        request: dict[str, Any] = {"user_prompt": prompt, "agent_name": agent_name, "session_id": session_id}
        if operation_id:
            request["operation_id"] = operation_id
        try:
            ctx = _with_ids(trace.set_span_in_context(span), self.instance_id, operation_id)
            body = await self._call("POST", self.operations_url, ctx, json=request)
            if not isinstance(body.get("operation_id"), str) or not body["operation_id"]:
                raise CoreApiError(f"answered POST {self.operations_url} without an operation_id")
        except BaseException as error:
            record_failure(error, span, getattr(error, "hop", None))
            span.end()
            raise
        accepted_ns = time.time_ns()
        submit_ms = (time.monotonic() - started) * 1000
        op_id = body["operation_id"]
        annotate({c.ATTR_OPERATION_ID: op_id}, span)
        own_trace_id = format(span.get_span_context().trace_id, "032x") if span.get_span_context().is_valid else ""
        self._remember(op_id, span.get_span_context())
        self._pending[op_id] = _Pending(
            op_id, span, body, body.get("trace_id") or own_trace_id, started, accepted_ns, submit_ms
        )
        return body

    def _submit_attributes(
        self, prompt: str, agent_name: str, session_id: str, operation_id: str | None
    ) -> dict[str, Any]:
        encoded = prompt.encode()
        return {
            c.ATTR_INSTANCE_ID: self.instance_id,
            c.ATTR_AGENT_NAME: agent_name,
            c.ATTR_CONVERSATION_ID: session_id,
            c.ATTR_OPERATION_ID: operation_id,
            c.ATTR_PROMPT_SIZE: len(encoded),
            c.ATTR_PROMPT_SHA256: hashlib.sha256(encoded).hexdigest(),
            c.ATTR_PROMPT_TEXT: prompt if self.capture_prompts else None,
        }

    def abandon(self, operation_id: str, reason: str) -> None:
        """End the open ``portal.submit`` of an operation nobody will wait for."""
        pending = self._pending.pop(operation_id, None)
        if pending is not None:
            # Not an error of the operation: only this client stops watching it.
            pending.span.add_event("portal.abandoned", {"reason": reason})
            pending.span.end()

    # --- waiting ---

    async def wait(
        self,
        operation_id: str,
        *,
        timeout_s: float | None = None,
        on_status: Callable[[OperationView], None] | None = None,
    ) -> AskResult:
        """Poll until Core reports Completed or Failed; ``OperationTimeoutError`` after ``timeout_s``."""
        pending = self._pending.pop(operation_id, None)
        started = pending.started if pending else time.monotonic()
        parent = trace.set_span_in_context(pending.span) if pending else Context()
        wait_span = tracer().start_span(
            c.SPAN_PORTAL_WAIT,
            context=parent,
            start_time=pending.accepted_ns if pending else None,
            attributes={c.ATTR_INSTANCE_ID: self.instance_id, c.ATTR_OPERATION_ID: operation_id},
        )
        spans = [wait_span, pending.span] if pending else [wait_span]
        state = _WaitState(operation_id, pending.body if pending else None)
        try:
            view = await self._poll_until_done(state, timeout_s or self.timeout_s, on_status)
        except BaseException as error:
            annotate({c.ATTR_POLL_COUNT: state.polls}, wait_span)
            for span in spans:
                if isinstance(error, asyncio.CancelledError):
                    span.set_status(Status(StatusCode.ERROR, "the wait was cancelled before the operation ended"))
                else:
                    record_failure(error, span, getattr(error, "hop", None))
                span.end()
            raise
        outcome = {
            c.ATTR_POLL_COUNT: state.polls,
            c.ATTR_OPERATION_STATUS: view.status,
            c.ATTR_FAILED_HOP: view.failed_hop,
        }
        for span in spans:
            annotate(outcome, span)
            if view.status == "Failed":
                span.set_status(Status(StatusCode.ERROR, f"operation Failed: {view.status_message or view.answer}"))
            span.end()
        trace_id = view.trace_id or (pending.trace_id if pending else "")
        return AskResult(
            operation_id=operation_id,
            status=view.status,
            answer=view.answer or "",
            status_message=view.status_message,
            trace_id=trace_id,
            jaeger_link=self.jaeger_link(trace_id),
            polls=state.polls,
            submit_ms=pending.submit_ms if pending else 0.0,
            total_ms=(time.monotonic() - started) * 1000,
            failed_hop=view.failed_hop,
            operation=state.body or {},
        )

    async def _poll_until_done(
        self, state: _WaitState, timeout_s: float, on_status: Callable[[OperationView], None] | None
    ) -> OperationView:
        operation_id = state.operation_id
        interval = AdaptiveInterval(*self._interval)
        deadline = time.monotonic() + timeout_s
        view = view_of(state.body, operation_id) if state.body else None
        sleep_first = self.long_poll_s < 1  # without long-poll, even the first poll waits a few ms
        while view is None or not view.done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OperationTimeoutError(operation_id, timeout_s, state.polls, view.status_message if view else None)
            if sleep_first:
                await asyncio.sleep(min(interval.next(), remaining))
            wait_s = int(min(self.long_poll_s, remaining))
            state.polls += 1
            asked = time.monotonic()
            state.body = await self.poll(operation_id, wait_s=wait_s, count=state.polls)
            view = view_of(state.body, operation_id)
            if on_status is not None:
                on_status(view)
            # An InProgress answer well before ``wait_s`` means the server does not hold long-polls
            # (or answered a progress change): sleep adaptively rather than hammer it.
            held = wait_s > 0 and time.monotonic() - asked >= wait_s / 2
            if held:
                interval.reset()
            sleep_first = not held
        return view

    async def poll(
        self,
        operation_id: str,
        *,
        wait_s: float = 0,
        count: int = 1,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """One status request in its own ``portal.poll`` span, linked to the operation's ``portal.submit``
        when this client submitted it. ``ctx`` parents the poll (default: none, a trace of its own)."""
        submitted = self._submissions.get(operation_id)
        links = [Link(submitted, {"foundationallm.link": "operation"})] if submitted is not None else []
        attributes = {c.ATTR_INSTANCE_ID: self.instance_id, c.ATTR_OPERATION_ID: operation_id, c.ATTR_POLL_COUNT: count}
        base = _with_ids(ctx if ctx is not None else Context(), self.instance_id, operation_id)
        with hop_span(c.SPAN_PORTAL_POLL, attributes, links=links, ctx=base) as span:
            params = {"wait": str(int(wait_s))} if wait_s >= 1 else None
            body = await self._call(
                "GET",
                f"{self.operations_url}/{quote(operation_id, safe='')}/status",
                trace.set_span_in_context(span, base),
                params=params,
                timeout=self.request_timeout_s + max(wait_s, 0),
            )
            annotate({c.ATTR_OPERATION_STATUS: view_of(body, operation_id).status}, span)
            return body

    async def download_file(self, file_id: str, max_bytes: int) -> tuple[bytes, str]:
        """A file the agent produced, from Core's files route (``{{fllm_base_url}}/instances/{i}/files/
        FoundationaLLM.Context/{fileId}``, as in the Message's file URLs): its bytes and content type."""
        url = f"{self.core_url}/instances/{self.instance_id}/files/FoundationaLLM.Context/{quote(file_id, safe='')}"
        headers: dict[str, str] = {}
        if self.bearer is not None:
            try:
                headers["Authorization"] = f"Bearer {await self.bearer.token()}"
            except Exception as error:  # noqa: BLE001 - any credential failure: no call without a token
                raise CoreApiError(f"no bearer token for GET {url} ({type(error).__name__}: {error})", 401) from error
        try:
            async with self._http.stream("GET", url, headers=headers) as response:
                if not response.is_success:
                    await response.aread()
                    raise failed_response("GET", url, response)
                content = bytearray()
                async for chunk in response.aiter_bytes():
                    content += chunk
                    if len(content) > max_bytes:
                        raise CoreApiError(f"the file {file_id} is larger than {max_bytes} bytes", 413)
                return bytes(content), response.headers.get("content-type", "application/octet-stream")
        except httpx.TransportError as error:
            raise CoreUnavailableError(f"could not be reached at {self.core_url} ({type(error).__name__})") from error

    # --- plumbing ---

    async def _call(self, method: str, url: str, ctx: Context, *, timeout: float | None = None,
                    **kwargs: Any) -> dict[str, Any]:
        headers: dict[str, str] = {}
        if self.bearer is not None:
            try:
                headers["Authorization"] = f"Bearer {await self.bearer.token()}"
            except Exception as error:  # noqa: BLE001 - any credential failure: no call without a token
                raise CoreApiError(f"no bearer token for {method} {url} ({type(error).__name__}: {error})",
                                   401) from error
        inject(headers, context=ctx)  # the httpx instrumentation, when on, replaces it with its own span's
        request_timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0)) if timeout else httpx.USE_CLIENT_DEFAULT
        token = context.attach(ctx)  # the instrumented client parents its CLIENT span on the current context
        try:
            response = await self._http.request(method, url, headers=headers, timeout=request_timeout, **kwargs)
        except httpx.TimeoutException as error:
            raise CoreUnavailableError(f"did not answer {method} {url} in time ({type(error).__name__})") from error
        except httpx.TransportError as error:
            raise CoreUnavailableError(
                f"could not be reached at {self.core_url} ({type(error).__name__}: {error})"
            ) from error
        finally:
            context.detach(token)
        if not response.is_success:
            raise failed_response(method, url, response)
        try:
            body = response.json()
        except ValueError as error:
            raise CoreApiError(f"answered {method} {url} with a body that is not JSON", response.status_code) from error
        if not isinstance(body, dict):
            raise CoreApiError(f"answered {method} {url} with a body that is not an operation", response.status_code)
        return body

    def _remember(self, operation_id: str, span_context: SpanContext) -> None:
        if span_context.is_valid:
            self._submissions[operation_id] = span_context
            self._submissions.move_to_end(operation_id)
            while len(self._submissions) > _REMEMBERED_SUBMISSIONS:
                self._submissions.popitem(last=False)


def _with_ids(ctx: Context, instance_id: str, operation_id: str | None) -> Context:
    """Baggage with the FoundationaLLM ids, so every hop's spans carry them."""
    ctx = baggage.set_baggage(c.ATTR_INSTANCE_ID, instance_id, ctx)
    return baggage.set_baggage(c.ATTR_OPERATION_ID, operation_id, ctx) if operation_id else ctx
