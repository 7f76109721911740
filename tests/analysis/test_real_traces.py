"""The analysis on traces real services wrote: the emulator as a process now, the whole chain's recorded run."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from opentelemetry.propagate import inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from telemetry import conventions as c
from telemetry.analysis.cli import print_trace
from telemetry.analysis.latency import LatencyAnalysis, critical_path, self_times
from telemetry.analysis.phases import PHASE_NAMES, is_execution, trace_phases
from telemetry.analysis.trace_sources import FileSource
from telemetry.otlp_json import JsonLinesSpanExporter
from tests.real_service import warm_pool_ready
from tests.wait import WaitTimeout, wait_until

REPO = Path(__file__).resolve().parents[2]
CHAIN_RUN = REPO / "tests" / "fixtures" / "chain-run.traces.jsonl"
TOKEN = "analysis-test-token"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data_dir = tmp_path_factory.mktemp("emulator")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("FLLM_", "OTEL_"))},
           "FLLM_PORT": str(port), "FLLM_DATA_DIR": str(data_dir), "FLLM_DYNAMIC_SESSIONS_TOKEN": TOKEN,
           "FLLM_CODE_POOL_SIZE": "1", "FLLM_TELEMETRY_FILE": "on"}
    log = (data_dir / "server.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "services.dynamic_sessions"], cwd=REPO, env=env,
                               stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: warm_pool_ready(url), "the emulator's warm interpreter", 30, every_s=0.1)
    except WaitTimeout:
        process.kill()
        pytest.fail(f"the emulator did not start: {(data_dir / 'server.log').read_text()[-2000:]}")
    yield url, data_dir / "traces.jsonl"
    process.send_signal(signal.SIGTERM)
    process.wait(15)
    log.close()


@pytest.mark.chain  # the emulator as its own process
def test_a_trace_the_emulator_wrote_while_its_spans_are_still_being_flushed(emulator: tuple[str, Path]) -> None:
    url, path = emulator
    provider = TracerProvider(resource=Resource.create({"service.name": "analysis-test"}))
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(path)))  # the same file, another process
    with provider.get_tracer("tests").start_as_current_span("caller", kind=trace.SpanKind.CLIENT) as caller:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        inject(headers)
        with suppress_http_instrumentation():
            answer = httpx.post(f"{url}/executions?api-version=2024-10-02-preview&identifier=analysis",
                                headers=headers, timeout=30, json={
                                    "codeInputType": "Inline", "executionType": "Synchronous",
                                    "code": "import time\ntime.sleep(0.05)\nprint('done')"}).json()
    trace_id = format(caller.get_span_context().trace_id, "032x")
    out = io.StringIO()
    assert print_trace(trace_id, str(path), out) == 0  # the emulator's batch has not been written yet
    text = out.getvalue()
    assert text.startswith(f"Trace {trace_id}  4 spans  2 services")
    for row in ("* analysis-test  caller", f"{c.DYNAMIC_SESSIONS}  POST /executions", c.SPAN_CODE_SESSION_ACQUIRE,
                c.SPAN_CODE_EXECUTE):
        assert row in text

    read = FileSource(path).trace(trace_id)
    spans = {span.name: span for span in read.spans}
    server, execute = spans["POST /executions"], spans[c.SPAN_CODE_EXECUTE]
    acquire = spans[c.SPAN_CODE_SESSION_ACQUIRE]
    assert read.root.name == "caller" and server.parent_id == read.root.span_id and server.kind == "SERVER"
    assert execute.parent_id == acquire.parent_id == server.span_id
    assert execute.attributes[c.ATTR_CODE_EXECUTION_MS] == answer["result"]["executionTimeInMilliseconds"]
    selfs = self_times(read)
    assert selfs[execute.span_id] == execute.duration_ns
    assert acquire.end_ns <= execute.start_ns  # sequential, so the server's self time is a plain difference
    assert selfs[server.span_id] == server.duration_ns - acquire.duration_ns - execute.duration_ns
    path_sections = critical_path(read)
    assert sum(s.end_ns - s.start_ns for s in path_sections) == read.root.duration_ns
    on_path = {s.span_id: s.end_ns - s.start_ns for s in path_sections}
    assert on_path[execute.span_id] == execute.duration_ns  # the server's last child, wholly on the path

    result = LatencyAnalysis().add_all([read]).to_dict()
    hops = {(h["service"], h["span"]): h for h in result["hops"]}
    assert hops[(c.DYNAMIC_SESSIONS, c.SPAN_CODE_EXECUTE)]["p50_ms"] == round(execute.duration_ns / 1e6, 3)
    assert result["operations"] == 0  # no Core API submission in this trace: no phases


def test_the_recorded_run_of_the_whole_chain() -> None:
    if not CHAIN_RUN.exists():
        pytest.skip(f"{CHAIN_RUN.relative_to(REPO)} is not recorded yet (the lead adds it from a real chain run)")
    traces = list(FileSource(CHAIN_RUN).traces())
    result = LatencyAnalysis().add_all(traces).to_dict()
    assert result["operations"] >= 1
    for trace_ in traces:
        sections = critical_path(trace_)
        assert sum(s.end_ns - s.start_ns for s in sections) == trace_.root.duration_ns
    phases = {p["phase"]: p for p in result["phases"]}
    for name in ("portal_to_core", "gatekeeper", "core", "orchestration_build", "code_session_create",
                 "orchestration_other", "agent", "result_write", "poll_delay"):
        assert phases[name]["count"] == result["operations"], name
    ran_code = sum(1 for t in traces if any(is_execution(s.service, s.name) for s in t.spans))
    assert ran_code >= 1 and phases["execution"]["count"] == phases["queue_wait"]["count"] == ran_code
    hops = {(h["service"], h["span"]) for h in result["hops"]}
    assert (c.PORTAL, c.SPAN_PORTAL_SUBMIT) in hops and (c.CORE_API, f"POST {c.ROUTE_ASYNC_COMPLETIONS}") in hops
    # the phases add up to the end-to-end time of every operation, with or without code
    for trace_ in traces:
        phases_of = trace_phases(trace_)
        if phases_of:
            present = [phases_of[name] for name in PHASE_NAMES if phases_of[name] is not None]
            assert sum(present) == pytest.approx(phases_of["end_to_end"], abs=1e-6)
            assert all(value >= 0 for value in present), phases_of


def _raw_spans(path: Path) -> dict[str, list[dict[str, object]]]:
    """The file's spans by trace id, read with nothing but json: a cross-check of the reader."""
    by_trace: dict[str, list[dict[str, object]]] = {}
    for line in path.read_text().splitlines():
        for resource in json.loads(line).get("resourceSpans", ()):
            for scope in resource["scopeSpans"]:
                for span in scope["spans"]:
                    by_trace.setdefault(span["traceId"], []).append(span)
    return by_trace


def test_the_recorded_run_matches_its_raw_spans() -> None:
    if not CHAIN_RUN.exists():
        pytest.skip(f"{CHAIN_RUN.relative_to(REPO)} is not recorded yet (the lead adds it from a real chain run)")
    raw = _raw_spans(CHAIN_RUN)
    traces = {t.trace_id: t for t in FileSource(CHAIN_RUN).traces()}
    assert {tid: len(spans) for tid, spans in raw.items()} == {tid: len(t.spans) for tid, t in traces.items()}
    checked = 0
    for trace_id, spans in raw.items():
        named = {}
        for span in spans:
            named.setdefault(span["name"], []).append(span)
        if c.SPAN_PORTAL_SUBMIT not in named:
            continue
        (root,), (wait,) = named[c.SPAN_PORTAL_SUBMIT], named[c.SPAN_PORTAL_WAIT]
        phases_of = trace_phases(traces[trace_id])
        assert phases_of["end_to_end"] == (int(wait["endTimeUnixNano"]) - int(root["startTimeUnixNano"])) / 1e6
        # a recording of an earlier version names the interpreter run as the tool call is named now
        executions = named.get(c.SPAN_CODE_EXECUTE) or named.get(c.SPAN_CODE_EXECUTE_BEFORE, [])
        if len(executions) == 1:
            (run,) = executions
            assert phases_of["execution"] == (int(run["endTimeUnixNano"]) - int(run["startTimeUnixNano"])) / 1e6
            checked += 1
        sections = critical_path(traces[trace_id])
        on_path = {s.span_id for s in sections}
        (workflow,) = named.get(c.SPAN_LANGCHAIN_WORKFLOW) or named[c.SPAN_LANGCHAIN_WORKFLOW_BEFORE]
        # The client waits for the background workflow: it is on the path, inside the wait, not clipped away.
        assert workflow["spanId"] in on_path
        wait_on_path = sum(s.end_ns - s.start_ns for s in sections if s.span_id == wait["spanId"])
        assert wait_on_path == int(wait["endTimeUnixNano"]) - int(wait["startTimeUnixNano"]) - sum(
            s.end_ns - s.start_ns for s in sections if s.span_id in {workflow["spanId"], *(
                d.span_id for d in traces[trace_id].descendants(traces[trace_id].by_id[workflow["spanId"]]))})
        for run in executions:
            assert run["spanId"] in on_path
    assert checked >= 1


def _renamed(line: str) -> str:
    """One line of the recording as today's services write it: FoundationaLLM's service names and namespace."""
    document = json.loads(line)
    for resource_spans in document.get("resourceSpans", ()):
        for attribute in resource_spans["resource"]["attributes"]:
            value = attribute["value"]
            if attribute["key"] == "service.name":
                value["stringValue"] = c.service_name_now(value["stringValue"])
            elif attribute["key"] == "service.namespace":
                value["stringValue"] = c.SERVICE_NAMESPACE
    return json.dumps(document)


def test_the_recorded_run_reads_the_same_under_either_generation_of_service_names(tmp_path: Path) -> None:
    if not CHAIN_RUN.exists():
        pytest.skip(f"{CHAIN_RUN.relative_to(REPO)} is not recorded yet (the lead adds it from a real chain run)")
    renamed = tmp_path / "renamed.traces.jsonl"
    renamed.write_text("\n".join(_renamed(line) for line in CHAIN_RUN.read_text().splitlines() if line) + "\n")
    names = {str(s.resource.get("service.name")) for t in FileSource(CHAIN_RUN).traces() for s in t.spans}
    renamed_names = {str(s.resource.get("service.name")) for t in FileSource(renamed).traces() for s in t.spans}
    assert renamed_names <= set(c.CHAIN_SERVICES) and c.CORE_API in renamed_names
    if names & set(c.SERVICE_NAMES_BEFORE):  # a recording of the earlier names: the two files differ
        assert names != renamed_names
    results = [LatencyAnalysis().add_all(FileSource(path).traces()).to_dict() for path in (CHAIN_RUN, renamed)]
    assert results[0] == results[1] and results[0]["operations"] >= 1
    assert {h["service"] for h in results[0]["hops"]} <= set(c.CHAIN_SERVICES)
    for before, now in zip(FileSource(CHAIN_RUN).traces(), FileSource(renamed).traces(), strict=True):
        assert trace_phases(before) == trace_phases(now)
        assert [(s.service, s.name) for s in before.spans] == [(s.service, s.name) for s in now.spans]
