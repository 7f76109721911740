"""Trace-context helpers the services use, so that their code reads like their business.

- ``spawn``/``run_in_thread`` carry the caller's context explicitly into work that outlives the
  request: the background spans are children of the span that started them, never orphans.
- ``current_traceparent``/``link_to`` store a submission's context and link polls back to it.
- ``hop_span`` wraps a unit of work in a span with FoundationaLLM attributes and records failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from opentelemetry import baggage, context, trace
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from telemetry import conventions as c
from telemetry.id_hash import keyed_hash

T = TypeVar("T")
_background: set[asyncio.Task[Any]] = set()
_RECORDED = "_foundationallm_recorded"

AttributeValue = str | bool | int | float | list[str]


@functools.cache
def tracer(name: str = "fllm-callstack") -> trace.Tracer:
    """One tracer per name for the process: the SDK's ``get_tracer`` costs ~20 µs a call (it checks
    its arguments for deprecations under a warnings filter). Before the provider is set this is the
    API's proxy tracer, which follows the provider once it is."""
    return trace.get_tracer(name)


def spawn(coro: Coroutine[Any, Any, T], ctx: context.Context | None = None) -> asyncio.Task[T]:
    """Run ``coro`` as a background task under ``ctx`` (default: the current context), kept alive."""
    ctx = ctx if ctx is not None else context.get_current()
    run_ctx = contextvars.copy_context()
    run_ctx.run(context.attach, ctx)
    task = asyncio.get_running_loop().create_task(coro, context=run_ctx)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


async def run_in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking function in a thread with the current trace context attached there."""
    return await asyncio.to_thread(contextvars.copy_context().run, fn, *args)


async def drain_background(timeout: float = 5.0) -> None:
    """Give in-flight background tasks a chance to finish (used on shutdown)."""
    if _background:
        await asyncio.wait(set(_background), timeout=timeout)


def current_traceparent() -> str:
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent", "")


def trace_id_of(traceparent: str) -> str:
    parts = traceparent.split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else ""


def current_trace_id() -> str:
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else ""


def context_from_traceparent(traceparent: str) -> context.Context:
    return extract({"traceparent": traceparent}) if traceparent else context.Context()


def link_to(traceparent: str) -> list[Link]:
    """A span link to the span a stored traceparent names (empty when it names none)."""
    span_context = trace.get_current_span(context_from_traceparent(traceparent)).get_span_context()
    return [Link(span_context, {"foundationallm.link": "operation"})] if span_context.is_valid else []


def hashed(value: str, length: int = 16) -> str:
    """A stable, non-reversible stand-in for a secret identifier on spans: HMAC-SHA256 with the
    deployment's key (telemetry/id_hash.py), so it cannot be reversed by guessing the id."""
    return keyed_hash(value, length)


def annotate(attributes: Mapping[str, AttributeValue | None], span: Span | None = None) -> None:
    """Set the attributes that have a value on ``span`` (default: the current span)."""
    target = span or trace.get_current_span()
    if target.is_recording():
        target.set_attributes({k: v for k, v in attributes.items() if v is not None and v != ""})


def set_operation_baggage(instance_id: str, operation_id: str) -> context.Context:
    ctx = baggage.set_baggage(c.ATTR_INSTANCE_ID, instance_id)
    return baggage.set_baggage(c.ATTR_OPERATION_ID, operation_id, ctx)


def record_failure(error: BaseException, span: Span | None = None, hop: str | None = None) -> None:
    """Mark ``span`` (default: the current one) failed. The exception event goes on the first span that
    records this exception, where it happened; spans it passes through on its way up only get the status."""
    target = span or trace.get_current_span()
    if not target.is_recording():
        return
    if not getattr(error, _RECORDED, False):
        target.record_exception(error)
        with contextlib.suppress(AttributeError):  # exceptions with __slots__ cannot be marked
            setattr(error, _RECORDED, True)
    target.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:512]))
    target.set_attribute("error.type", type(error).__qualname__)
    hop = hop or getattr(error, "hop", None)  # a HopError names the hop that failed
    if isinstance(hop, str) and hop:
        target.set_attribute(c.ATTR_FAILED_HOP, hop)


@contextmanager
def hop_span(
    name: str,
    attributes: Mapping[str, AttributeValue | None] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    links: list[Link] | None = None,
    ctx: context.Context | None = None,
) -> Iterator[Span]:
    """A span for one step of a hop; an exception escaping it marks the span ERROR and re-raises."""
    with tracer().start_as_current_span(
        name, context=ctx, kind=kind, links=links, record_exception=False, set_status_on_exception=False
    ) as span:
        annotate(attributes or {}, span)
        try:
            yield span
        except BaseException as error:
            if not isinstance(error, asyncio.CancelledError | GeneratorExit):
                record_failure(error, span, getattr(error, "hop", None))
            raise


@contextmanager
def activity(name: str, attributes: Mapping[str, AttributeValue | None]) -> Iterator[Span]:
    """One of FoundationaLLM's own activities: kind SERVER, a child of the current span, as the original
    starts them (its .NET ActivitySources and its Python telemetry alike)."""
    with hop_span(name, attributes, kind=SpanKind.SERVER) as span:
        yield span


async def traced(name: str, work: Callable[[], Awaitable[T]], **attributes: AttributeValue | None) -> T:
    with hop_span(name, attributes):
        return await work()


def baggage_attributes() -> dict[str, str]:
    """FoundationaLLM ids carried in baggage, to stamp on spans of hops that do not parse them."""
    return {k: str(v) for k, v in baggage.get_all().items() if k.startswith("foundationallm.")}


__all__ = [
    "SpanKind",
    "annotate",
    "baggage_attributes",
    "context_from_traceparent",
    "current_trace_id",
    "current_traceparent",
    "drain_background",
    "hashed",
    "hop_span",
    "link_to",
    "operation_baggage",
    "record_failure",
    "run_in_thread",
    "set_operation_baggage",
    "spawn",
    "trace_id_of",
    "traced",
    "tracer",
]


@contextmanager
def operation_baggage(instance_id: str, operation_id: str) -> Iterator[None]:
    """Carry the operation's ids in baggage for the rest of this block: every later span, on this hop
    and on every hop it calls, is stamped with them (see setup.FoundationaLLMBaggageProcessor)."""
    token = context.attach(set_operation_baggage(instance_id, operation_id))
    try:
        yield
    finally:
        context.detach(token)
