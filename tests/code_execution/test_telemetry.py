"""Spans and metrics of the code-execution hop."""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from services.code_execution import PROVIDER_CODE_INTERPRETER, ExecutionSpec, Executor
from telemetry import conventions as c
from telemetry.context import hashed
from tests.code_execution.conftest import API, Harness, LoopThread, make_config, spans_named

SECRET_CODE = "marker_value = 'do-not-export-this-code'\nprint(marker_value)"


def new_id() -> str:
    return f"secret-session-{uuid.uuid4().hex[:12]}"


def all_attribute_text(spans: list[ReadableSpan]) -> str:
    values = []
    for span in spans:
        values.extend(str(value) for value in (span.attributes or {}).values())
        for event in span.events:
            values.extend(str(value) for value in (event.attributes or {}).values())
    return "\n".join(values)


def test_execute_span_carries_the_conventions_and_no_secrets(emulator: Harness, span_exporter) -> None:  # noqa: ANN001
    identifier = new_id()
    span_exporter.clear()
    body = emulator.execute(identifier, SECRET_CODE).json()
    (span,) = spans_named(span_exporter, c.SPAN_CODE_EXECUTE)
    attributes = dict(span.attributes or {})
    code_bytes = SECRET_CODE.encode()
    assert attributes[c.ATTR_CODE_EXECUTION_ID] == body["id"]
    assert attributes[c.ATTR_CODE_SESSION_ID_HASH] == hashed(identifier)
    assert attributes[c.ATTR_CODE_SESSION_PROVIDER] == PROVIDER_CODE_INTERPRETER
    assert attributes[c.ATTR_CODE_SIZE] == len(code_bytes)
    assert attributes[c.ATTR_CODE_SHA256] == hashlib.sha256(code_bytes).hexdigest()
    assert attributes[c.ATTR_CODE_STDOUT_SIZE] == len("do-not-export-this-code\n")
    assert attributes[c.ATTR_CODE_STDERR_SIZE] == 0
    assert attributes[c.ATTR_CODE_STATUS] == "Succeeded" and attributes[c.ATTR_CODE_TIMED_OUT] is False
    assert attributes[c.ATTR_CODE_EXECUTION_MS] == body["result"]["executionTimeInMilliseconds"]
    assert attributes[c.ATTR_CODE_EXECUTION_TYPE] == "Synchronous"
    assert span.status.status_code is StatusCode.UNSET

    trace_spans = [s for s in span_exporter.get_finished_spans() if s.context.trace_id == span.context.trace_id]
    server = next(s for s in trace_spans if s.kind is SpanKind.SERVER)
    (acquire,) = spans_named(span_exporter, c.SPAN_CODE_SESSION_ACQUIRE)
    assert span.parent.span_id == acquire.parent.span_id == server.context.span_id
    assert server.attributes["url.query"] == f"api-version={API}&identifier={hashed(identifier)}"
    text = all_attribute_text(trace_spans)
    assert identifier not in text and "do-not-export-this-code" not in text and "marker_value" not in text


def test_failed_execution_marks_the_span_error_without_the_message(emulator: Harness, span_exporter) -> None:  # noqa: ANN001
    span_exporter.clear()
    emulator.execute(new_id(), "raise RuntimeError('private detail')")
    (span,) = spans_named(span_exporter, c.SPAN_CODE_EXECUTE)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[c.ATTR_CODE_STATUS] == "Failed" and span.attributes["error.type"] == "RuntimeError"
    (event,) = [event for event in span.events if event.name == "exception"]
    assert event.attributes["exception.type"] == "RuntimeError"
    assert "private detail" not in all_attribute_text([span])
    assert span.attributes[c.ATTR_CODE_STDERR_SIZE] > 0


def test_timeout_is_recorded_on_the_span(emulator: Harness, span_exporter) -> None:  # noqa: ANN001
    span_exporter.clear()
    emulator.execute(new_id(), "while True: pass", timeoutInSeconds=1)
    (span,) = spans_named(span_exporter, c.SPAN_CODE_EXECUTE)
    assert span.attributes[c.ATTR_CODE_TIMED_OUT] is True and span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "TimeoutError"


def test_async_execution_span_is_a_child_of_the_submitting_post(emulator: Harness, span_exporter) -> None:  # noqa: ANN001
    identifier = new_id()
    span_exporter.clear()
    response = emulator.execute(identifier, "import time\ntime.sleep(0.2)", executionType="Asynchronous")
    assert response.status_code == 202
    for _ in range(100):
        if spans_named(span_exporter, c.SPAN_CODE_EXECUTE):
            break
        time.sleep(0.02)
    (span,) = spans_named(span_exporter, c.SPAN_CODE_EXECUTE)
    post = next(s for s in span_exporter.get_finished_spans()
                if s.kind is SpanKind.SERVER and s.name == "POST /executions")
    assert span.context.trace_id == post.context.trace_id and span.parent.span_id == post.context.span_id
    assert span.attributes[c.ATTR_CODE_EXECUTION_TYPE] == "Asynchronous"
    assert span.end_time > post.end_time  # it outlived the request


def test_metrics_record_duration_by_outcome_and_acquisitions(tmp_path: Path) -> None:
    reader = InMemoryMetricReader()
    executor = Executor(make_config(tmp_path, pool_size=1), PROVIDER_CODE_INTERPRETER, MeterProvider([reader]))
    loop = LoopThread()

    async def scenario() -> None:
        await executor.start()
        await executor.pool.wait_ready()
        session = executor.open_session("metrics-session")
        await executor.run(session, ExecutionSpec("1", 5, 100), "a")
        await executor.run(session, ExecutionSpec("1/0", 5, 100), "b")
        await executor.run(session, ExecutionSpec("while True: pass", 0.5, 100), "c")
        await executor.run(executor.open_session("metrics-other"), ExecutionSpec("1", 5, 100), "d")
        await executor.stop()

    try:
        loop.run(scenario())
    finally:
        loop.close()
    metrics = {m.name: m for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics
               for m in sm.metrics}
    duration = metrics[c.METRIC_CODE_EXECUTION_DURATION]
    assert duration.unit == "s"
    counts = {point.attributes[c.METRIC_ATTR_OUTCOME]: point.count for point in duration.data.data_points}
    assert counts == {"Succeeded": 2, "Failed": 1, "TimedOut": 1}
    assert {p.attributes[c.METRIC_ATTR_PROVIDER] for p in duration.data.data_points} == {PROVIDER_CODE_INTERPRETER}
    points = metrics[c.METRIC_CODE_SESSION_ACQUIRE].data.data_points
    acquired = {point.attributes[c.METRIC_ATTR_ACQUIRE]: point.value for point in points}
    # a, b: warm then existing; c: existing (times out); d: new session -> warm or cold (pool refill race)
    assert acquired["existing"] == 2 and acquired.get("warm", 0) + acquired.get("cold", 0) == 2
    if executor.sessions.cgroups is not None:  # every execution adds to the limits' counters, 0 or more
        (killed,) = metrics[c.METRIC_CODE_SESSION_OOM_KILLS].data.data_points
        (throttled,) = metrics[c.METRIC_CODE_SESSION_THROTTLED].data.data_points  # the spin may have been held
        assert killed.attributes == throttled.attributes == {c.METRIC_ATTR_PROVIDER: PROVIDER_CODE_INTERPRETER}
        assert killed.value == 0 and throttled.value in (0, 1)


def test_without_a_sandbox_code_runs_in_the_session_folder_and_says_so(tmp_path: Path) -> None:
    """FLLM_CODE_SANDBOX=none: the interpreter alone (rlimits, uid), reported as not isolated."""
    executor = Executor(make_config(tmp_path, pool_size=0, sandbox="none"), PROVIDER_CODE_INTERPRETER)
    loop = LoopThread()

    async def scenario() -> tuple[str, dict[str, str], bytes]:
        await executor.start()
        session = executor.open_session("plain-session")
        record = await executor.run(session, ExecutionSpec("open('a.txt', 'w').write('here')\n1", 5, 1000), "x")
        content = (session.data_dir / "a.txt").read_bytes()
        report = dict(executor.sandbox)
        await executor.stop()
        return str(record.outcome.result), report, content

    try:
        result, report, content = loop.run(scenario())
    finally:
        loop.close()
    assert report["isolation"].startswith("none") and report["network"] == "shared"
    assert content == b"here" and result == "1"


def test_status_reports_the_sandbox(emulator: Harness) -> None:
    emulator.execute(new_id(), "1")
    status = emulator.request("GET", "/status").json()
    assert status["status"] == "ready" and status["warm_pool"]["size"] == 2
    assert set(status["sandbox"]) == {
        "isolation", "network", "filesystem", "processes", "identity", "limits", "disk", "syscalls",
    }
    assert status["sandbox"]["filesystem"] in {"private-root", "host"}
