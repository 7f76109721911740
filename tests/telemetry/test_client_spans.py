"""The CLIENT span of a hop call (telemetry.client_spans): what it carries to the next hop."""

from __future__ import annotations

import pytest
from opentelemetry import context, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from telemetry.client_spans import client_call
from tests.in_process_spans import sdk_provider

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736


@pytest.fixture(scope="module", autouse=True)
def sdk() -> None:
    sdk_provider("core_api")


def call_under(flags: TraceFlags) -> dict[str, str]:
    parent = SpanContext(TRACE_ID, 0x00F067AA0BA902B7, is_remote=True, trace_flags=flags)
    token = context.attach(trace.set_span_in_context(NonRecordingSpan(parent)))
    headers: dict[str, str] = {}
    try:
        with client_call("GET", "http://127.0.0.1:1/x", "127.0.0.1", 1, headers) as call:
            call.answered(200)
    finally:
        context.detach(token)
    return headers


def test_a_sampled_trace_goes_on_sampled_with_the_calls_own_span_as_parent() -> None:
    traceparent = call_under(TraceFlags(TraceFlags.SAMPLED))["traceparent"]
    version, trace_id, span_id, flags = traceparent.split("-")
    assert (version, trace_id, flags) == ("00", f"{TRACE_ID:032x}", "01")
    assert span_id != "00f067aa0ba902b7"


def test_a_trace_sampled_out_upstream_goes_on_sampled_out() -> None:
    traceparent = call_under(TraceFlags(TraceFlags.DEFAULT))["traceparent"]
    assert traceparent.startswith(f"00-{TRACE_ID:032x}-") and traceparent.endswith("-00")
