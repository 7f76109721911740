"""PortalClient against a fake Core API over real HTTP: answers, polling, long-poll, errors and spans."""

from __future__ import annotations

import asyncio
import secrets
import socket
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from services.portal import CoreApiError, CoreUnavailableError, OperationTimeoutError, PortalClient
from services.portal.client import AskResult
from services.portal.operation import AdaptiveInterval
from telemetry import conventions as c
from tests.portal.conftest import FakeCore, answer_to, spans_named, trace_id_hex, traceparent_trace_id


def ask(fake: FakeCore, prompt: str, *, instance_id: str | None = None, **options: Any) -> AskResult:
    client_options = {k: options.pop(k) for k in list(options) if k in {"timeout_s", "long_poll_s", "jaeger_url"}}

    async def run() -> AskResult:
        async with PortalClient(fake.url, instance_id or fake.instance_id, **client_options) as client:
            return await client.ask(prompt, **options)

    return asyncio.run(run())


def test_ask_polls_until_completed_and_returns_the_answer(fake_core: FakeCore) -> None:
    fake_core.reset(in_progress_polls=3)
    result = ask(fake_core, "print(6 * 7)", jaeger_url="http://127.0.0.1:16686/")
    assert result.status == "Completed"
    assert result.answer == answer_to("print(6 * 7)")
    assert result.polls == 4 == len(fake_core.polls)  # 3 InProgress answers, then Completed
    assert result.status_message is None and result.failed_hop is None
    assert result.operation["result"]["status"] == "Completed"
    assert result.jaeger_link == f"http://127.0.0.1:16686/trace/{result.trace_id}"
    assert 0 < result.submit_ms <= result.total_ms
    (submission,) = fake_core.submissions
    body = submission["body"]
    assert body["user_prompt"] == "print(6 * 7)" and body["agent_name"] == "code-interpreter"
    assert body["session_id"], "Core needs a conversation id: the client makes one"
    assert "operation_id" not in body


def test_the_submission_carries_the_trace_and_each_poll_has_its_own(
    fake_core: FakeCore, span_exporter: InMemorySpanExporter
) -> None:
    span_exporter.clear()
    result = ask(fake_core, "what is 2+2?")
    (submit,) = spans_named(span_exporter, c.SPAN_PORTAL_SUBMIT)
    (wait,) = spans_named(span_exporter, c.SPAN_PORTAL_WAIT)
    polls = sorted(spans_named(span_exporter, c.SPAN_PORTAL_POLL), key=lambda s: s.start_time or 0)

    operation_trace = trace_id_hex(submit)
    assert submit.parent is None, "portal.submit is the root of the operation's trace"
    assert traceparent_trace_id(fake_core.submissions[0]["traceparent"]) == operation_trace == result.trace_id
    assert f"{c.ATTR_INSTANCE_ID}={fake_core.instance_id}" in (fake_core.submissions[0]["baggage"] or "")
    assert submit.attributes[c.ATTR_OPERATION_ID] == result.operation_id
    assert submit.attributes[c.ATTR_AGENT_NAME] == "code-interpreter"
    assert submit.attributes[c.ATTR_PROMPT_SIZE] == len(b"what is 2+2?")
    assert c.ATTR_PROMPT_TEXT not in submit.attributes, "prompts are not captured unless asked"
    assert submit.end_time >= wait.end_time, "portal.submit lasts until the client sees the end"

    assert wait.parent is not None and wait.parent.span_id == submit.context.span_id
    assert trace_id_hex(wait) == operation_trace
    assert wait.attributes[c.ATTR_POLL_COUNT] == 3 and wait.attributes[c.ATTR_OPERATION_STATUS] == "Completed"

    poll_traces = [traceparent_trace_id(p["traceparent"]) for p in fake_core.polls]
    assert len(set(poll_traces)) == len(poll_traces) == 3, "every poll is a trace of its own"
    assert operation_trace not in poll_traces
    assert [trace_id_hex(span) for span in polls] == poll_traces
    for count, span in enumerate(polls, start=1):
        assert span.parent is None
        (link,) = span.links
        assert link.context.trace_id == submit.context.trace_id and link.context.span_id == submit.context.span_id
        assert span.attributes[c.ATTR_OPERATION_ID] == result.operation_id
        assert span.attributes[c.ATTR_POLL_COUNT] == count
    assert [s.attributes[c.ATTR_OPERATION_STATUS] for s in polls] == ["InProgress", "InProgress", "Completed"]


def test_a_callers_traceparent_is_joined(fake_core: FakeCore, span_exporter: InMemorySpanExporter) -> None:
    span_exporter.clear()
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    result = ask(fake_core, "hello", traceparent=f"00-{trace_id}-{parent_id}-01", operation_id="op-from-caller")
    (submit,) = spans_named(span_exporter, c.SPAN_PORTAL_SUBMIT)
    assert trace_id_hex(submit) == trace_id == result.trace_id
    assert submit.parent is not None and format(submit.parent.span_id, "016x") == parent_id
    assert traceparent_trace_id(fake_core.submissions[0]["traceparent"]) == trace_id
    assert fake_core.submissions[0]["body"]["operation_id"] == "op-from-caller" == result.operation_id


def test_long_poll_needs_one_or_two_polls(fake_core: FakeCore) -> None:
    fake_core.reset(in_progress_polls=None, complete_after_s=0.6, honour_wait=True)
    result = ask(fake_core, "slow one")
    assert result.status == "Completed" and result.answer == answer_to("slow one")
    assert 1 <= result.polls <= 2
    assert all(p["wait"] == "10" for p in fake_core.polls)
    assert result.total_ms >= 600


def test_without_long_poll_the_interval_adapts(fake_core: FakeCore) -> None:
    fake_core.reset(in_progress_polls=5)
    result = ask(fake_core, "adaptive", long_poll_s=0)
    assert result.status == "Completed" and result.polls == 6
    assert all(p["wait"] is None for p in fake_core.polls)
    assert result.total_ms < 5000


def test_the_adaptive_interval_starts_small_and_grows_to_its_cap() -> None:
    interval = AdaptiveInterval(initial_s=0.005, factor=1.5, cap_s=0.25)
    delays = [interval.next() for _ in range(14)]
    assert delays[0] == 0.005 and delays[1] == pytest.approx(0.0075)
    assert delays == sorted(delays) and delays[-1] == 0.25 and max(delays) == 0.25
    interval.reset()
    assert interval.next() == 0.005


def test_a_failed_operation_ends_with_its_reason(fake_core: FakeCore, span_exporter: InMemorySpanExporter) -> None:
    span_exporter.clear()
    fake_core.reset(in_progress_polls=1, fail=True)
    result = ask(fake_core, "1/0")
    assert result.status == "Failed"
    assert result.answer == result.status_message == "The code raised ZeroDivisionError"
    assert result.failed_hop == "context-api"
    (submit,) = spans_named(span_exporter, c.SPAN_PORTAL_SUBMIT)
    assert submit.status.status_code is StatusCode.ERROR
    assert submit.attributes[c.ATTR_FAILED_HOP] == "context-api"


def test_core_errors_name_the_status_and_the_detail(
    fake_core: FakeCore, span_exporter: InMemorySpanExporter
) -> None:
    span_exporter.clear()
    with pytest.raises(CoreApiError) as raised:
        ask(fake_core, "hi", instance_id="00000000-0000-0000-0000-00000000ffff")
    assert raised.value.status_code == 403
    assert raised.value.detail == "Access denied. Invalid instance ID."
    assert c.CORE_API in str(raised.value) and "403" in str(raised.value)
    (submit,) = spans_named(span_exporter, c.SPAN_PORTAL_SUBMIT)
    assert submit.status.status_code is StatusCode.ERROR
    assert submit.attributes[c.ATTR_FAILED_HOP] == c.CORE_API
    assert not spans_named(span_exporter, c.SPAN_PORTAL_WAIT)


def test_an_unknown_operation_is_a_404(fake_core: FakeCore) -> None:
    async def run() -> None:
        async with PortalClient(fake_core.url, fake_core.instance_id) as client:
            await client.poll("no-such-operation")

    with pytest.raises(CoreApiError) as raised:
        asyncio.run(run())
    assert raised.value.status_code == 404 and "no-such-operation" in raised.value.detail


def test_an_unreachable_core_is_named() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(CoreUnavailableError) as raised:
        ask(FakeCore(url=url), "anyone there?")
    assert str(raised.value).startswith(f"{c.CORE_API}: could not be reached at " + url)


def test_an_operation_that_never_ends_times_out(fake_core: FakeCore, span_exporter: InMemorySpanExporter) -> None:
    span_exporter.clear()
    fake_core.reset(in_progress_polls=None)
    with pytest.raises(OperationTimeoutError) as raised:
        ask(fake_core, "forever", timeout_s=0.5)
    assert "did not end within 0.5 s" in str(raised.value) and "Running agent tools" in str(raised.value)
    assert raised.value.polls == len(fake_core.polls) >= 2
    (wait,) = spans_named(span_exporter, c.SPAN_PORTAL_WAIT)
    (submit,) = spans_named(span_exporter, c.SPAN_PORTAL_SUBMIT)
    assert wait.status.status_code is StatusCode.ERROR and submit.status.status_code is StatusCode.ERROR


def test_an_operation_core_could_not_start_ends_without_polling(fake_core: FakeCore) -> None:
    fake_core.reset(start_failed=True)
    result = ask(fake_core, "hi")
    assert result.status == "Failed" and result.polls == 0 and not fake_core.polls
    assert result.answer == "Could not start completion operation due to an internal error."
