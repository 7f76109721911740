"""Every file format the reader takes, one span model out of all of them; streaming and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from telemetry import conventions as c
from telemetry.analysis.jaeger_json import to_jaeger_document
from telemetry.analysis.latency import LatencyAnalysis
from telemetry.analysis.phases import trace_phases
from telemetry.analysis.trace_sources import FileSource, open_source
from telemetry.analysis.traces import Event, TraceAssembler, TraceSourceError, group_traces, normalize_id, to_otlp
from tests.analysis.builder import MS, ORIGIN_NS, TraceBuilder, chain_trace, poll_trace, write_jsonl

MINUTE_NS = 60 * 10**9


def test_jsonl_groups_spans_spread_over_many_lines_by_trace(tmp_path: Path) -> None:
    first, second = chain_trace(), chain_trace(gatekeeper=False, origin_ns=ORIGIN_NS + 300 * MS)
    poll = poll_trace(first, 200)
    path = write_jsonl(tmp_path / "traces.jsonl", first.spans + second.spans + poll.spans, batch=4)
    assert len(path.read_text().splitlines()) == 12  # 47 spans in batches of 4, traces interleaved
    traces = {t.trace_id: t for t in FileSource(path).traces()}
    assert {tid: len(t.spans) for tid, t in traces.items()} == {
        first.trace_id: 22, second.trace_id: 20, poll.trace_id: 3}
    assert trace_phases(traces[second.trace_id])["gatekeeper"] == 0
    one = open_source(str(path)).trace(first.trace_id)
    assert one is not None and one.root.name == c.SPAN_PORTAL_SUBMIT and len(one.spans) == 22
    read = one.by_id[next(s.span_id for s in first.spans if s.name == c.SPAN_CODE_EXECUTE)]
    assert read.attributes[c.ATTR_CODE_EXECUTION_MS] == 500 and read.kind == "INTERNAL"
    assert read.resource["service.name"] == c.DYNAMIC_SESSIONS and read.scope == "tests"
    assert traces[poll.trace_id].root.links[0].span_id == first.spans[0].span_id
    assert open_source(str(path)).trace("f" * 32) is None


def test_the_stream_hands_out_traces_once_they_settle_and_never_splits_one() -> None:
    assembler = TraceAssembler(settle_ns=5 * MINUTE_NS)
    slow = chain_trace(execution_ms=200_000)  # a 200 s execution: no span of it ends for minutes
    early = [s for s in slow.spans if s.end_ns <= ORIGIN_NS + 100 * MS]
    late = [s for s in slow.spans if s not in early]
    for span in early:
        assembler.add(span)
    others = [chain_trace(origin_ns=ORIGIN_NS + i * MINUTE_NS) for i in range(1, 4)]
    handed_out = []
    for other in others:  # three minutes of other traffic: the slow trace must stay open
        for span in sorted(other.spans, key=lambda s: s.end_ns):
            assembler.add(span)
        handed_out += list(assembler.ready())
    assert handed_out == [] and assembler.open_traces == 4
    for span in late:
        assembler.add(span)
    later = chain_trace(origin_ns=ORIGIN_NS + 9 * MINUTE_NS)
    for span in later.spans:
        assembler.add(span)
    ready = list(assembler.ready())  # everything ending 5 minutes before the clock is complete
    assert {t.trace_id: len(t.spans) for t in ready} == {t.trace_id: 22 for t in [slow, *others]}
    assert assembler.open_traces == 1
    assert [t.trace_id for t in assembler.flush()] == [later.trace_id]


def test_older_traces_after_newer_ones_stay_whole(tmp_path: Path) -> None:
    """Two files concatenated, the later one first: the clock is already far ahead of the older traces."""
    old = [chain_trace(origin_ns=ORIGIN_NS + i * MINUTE_NS) for i in range(3)]
    new = [chain_trace(origin_ns=ORIGIN_NS + (60 + i) * MINUTE_NS) for i in range(3)]
    path = write_jsonl(tmp_path / "new.jsonl", [s for b in new for s in b.spans], batch=2)
    write_jsonl(path, [s for b in old for s in b.spans], batch=2)
    counts = {t.trace_id: len(t.spans) for t in FileSource(path).traces()}
    assert counts == {b.trace_id: 22 for b in old + new}


def test_collector_file_exporter_lines_with_metrics_and_an_unfinished_last_line(tmp_path: Path) -> None:
    """The collector's pdata JSON: schemaUrl, scope versions, flags, empty status, traceState; other signals."""
    span = {
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
        "parentSpanId": "eee19b7ec3c1b173", "traceState": "", "flags": 257,
        "name": "POST /executions", "kind": 2,
        "startTimeUnixNano": "1544712660000000000", "endTimeUnixNano": "1544712661250000000",
        "attributes": [{"key": "http.response.status_code", "value": {"intValue": "200"}},
                       {"key": "code.ok", "value": {"boolValue": True}},
                       {"key": "ratio", "value": {"doubleValue": 0.5}},
                       {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}]}}}],
        "droppedAttributesCount": 1, "status": {},
    }
    line = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "dynamic-sessions"}}]},
        "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation.fastapi", "version": "0.66b1"},
                        "spans": [span]}],
        "schemaUrl": "https://opentelemetry.io/schemas/1.11.0"}]}
    metrics = {"resourceMetrics": [{"resource": {}, "scopeMetrics": []}]}
    path = tmp_path / "collector.json"
    path.write_text(json.dumps(line) + "\n" + json.dumps(metrics) + "\n" + '{"resourceSpans": [{"reso')
    (trace,) = FileSource(path).traces()
    (read,) = trace.spans
    # recorded by an earlier version as "dynamic-sessions": read under today's name, the resource as recorded
    assert (read.service, read.kind, read.duration_ns, read.error) == (c.DYNAMIC_SESSIONS, "SERVER", 1_250_000_000,
                                                                       False)
    assert read.resource["service.name"] == "dynamic-sessions"
    assert read.attributes == {"http.response.status_code": 200, "code.ok": True, "ratio": 0.5, "tags": ["a"]}
    assert read.parent_id == "eee19b7ec3c1b173" and trace.roots == [read]


def test_one_otlp_document_jaeger_v3_answer_and_base64_ids(tmp_path: Path) -> None:
    b = chain_trace()
    document = to_otlp(b.spans)
    (tmp_path / "doc.json").write_text(json.dumps(document, indent=2))
    (tmp_path / "v3.json").write_text(json.dumps({"result": document}))
    for name in ("doc.json", "v3.json"):
        (trace,) = FileSource(tmp_path / name).traces()
        assert trace_phases(trace)["execution"] == 520
    assert normalize_id("W47/95gDgQPSabYzgT/GDA==", 16) == "5b8efff798038103d269b633813fc60c"
    assert normalize_id("7uGbfsPBsXQ=", 8) == "eee19b7ec3c1b174"
    assert normalize_id("ff", 8) == "00000000000000ff" and normalize_id("0" * 16, 8) == ""
    with pytest.raises(TraceSourceError, match="not a trace or span id"):
        normalize_id("not-an-id!", 8)


JAEGER_V1_EXPORT = {
    # The shape of Jaeger's /api/traces/{id} answer and UI download (jaeger model/converter/json fixtures):
    # 64-bit trace id, ids without leading zeros, typed tags, µs times, processes by id, warnings.
    "data": [{
        "traceID": "00000000000000a1",
        "spans": [
            {"traceID": "00000000000000a1", "spanID": "1", "operationName": "portal.submit", "references": [],
             "startTime": 1485467191639875, "duration": 100000, "tags": [], "logs": [], "processID": "p1",
             "warnings": None},
            {"traceID": "00000000000000a1", "spanID": "2", "operationName": "POST /executions",
             "references": [{"refType": "CHILD_OF", "traceID": "00000000000000a1", "spanID": "1"},
                            {"refType": "FOLLOWS_FROM", "traceID": "00000000000000ff", "spanID": "ff"}],
             "startTime": 1485467191649875, "duration": 60000,
             "tags": [{"key": "span.kind", "type": "string", "value": "server"},
                      {"key": "http.response.status_code", "type": "int64", "value": 500},
                      {"key": "error", "type": "bool", "value": True},
                      {"key": "otel.status_code", "type": "string", "value": "ERROR"},
                      {"key": "otel.status_description", "type": "string", "value": "interpreter died"},
                      {"key": "temperature", "type": "float64", "value": 72.5},
                      {"key": "blob", "type": "binary", "value": "AAAwOQ=="}],
             "logs": [{"timestamp": 1485467191659875,
                       "fields": [{"key": "event", "type": "string", "value": "exception"},
                                  {"key": "exception.type", "type": "string", "value": "RuntimeError"}]}],
             "processID": "p2", "warnings": ["some span warning"]},
            {"traceID": "00000000000000a1", "spanID": "3", "operationName": "execute_tool code_interpreter",
             "references": [{"refType": "CHILD_OF", "traceID": "00000000000000a1", "spanID": "2"}],
             "startTime": 1485467191659875, "duration": 40000, "tags": [], "logs": [], "processID": "p2",
             "warnings": None},
        ],
        "processes": {"p1": {"serviceName": "portal", "tags": []},
                      "p2": {"serviceName": "dynamic-sessions",
                             "tags": [{"key": "hostname", "type": "string", "value": "box"}]}},
        "warnings": None,
    }],
    "total": 0, "limit": 0, "offset": 0, "errors": None,
}


def test_jaeger_v1_export_file(tmp_path: Path) -> None:
    path = tmp_path / "jaeger.json"
    path.write_text(json.dumps(JAEGER_V1_EXPORT, indent=2))
    (trace,) = FileSource(path).traces()
    assert trace.trace_id == "000000000000000000000000000000a1"
    root, server, run = trace.spans
    assert (root.service, root.kind, root.parent_id) == (c.PORTAL, "INTERNAL", "")  # recorded as "portal"
    assert (server.service, server.kind, server.parent_id) == (c.DYNAMIC_SESSIONS, "SERVER", "0000000000000001")
    assert server.error and server.status_message == "interpreter died"
    assert server.attributes == {"http.response.status_code": 500, "temperature": 72.5, "blob": "AAAwOQ=="}
    assert [(k.trace_id, k.span_id) for k in server.links] == [("0" * 30 + "ff", "0" * 14 + "ff")]
    assert server.events[0].name == "exception" and server.events[0].attributes == {"exception.type": "RuntimeError"}
    assert server.resource == {"hostname": "box"}
    analysis = LatencyAnalysis().add_all([trace]).to_dict()
    hops = {h["span"]: h for h in analysis["hops"]}
    assert hops["POST /executions"]["self_p50_ms"] == 20.0 and hops["POST /executions"]["errors"] == 1
    # path: root 70-100, server 60-70, execution 20-60, server 10-20, root 0-10
    # the export is of an earlier version, which named the interpreter run "execute_tool code_interpreter"
    shares = [hops[name]["critical_path_share"] for name in ("portal.submit", "POST /executions",
                                                             c.SPAN_CODE_EXECUTE_BEFORE)]
    assert shares == [0.4, 0.2, 0.4]
    # the bare forms the UI also accepts: a list of traces, or one trace
    for document in (JAEGER_V1_EXPORT["data"], JAEGER_V1_EXPORT["data"][0]):
        path.write_text(json.dumps(document))
        assert [len(t.spans) for t in FileSource(path).traces()] == [3]


def test_jaeger_export_round_trips_and_has_the_upload_shape(tmp_path: Path) -> None:
    b = chain_trace(exec_error=True)
    b.spans[-1].events.append(Event(ORIGIN_NS + 100 * MS, "retry", {"attempt": 2}))
    b.spans[0].attributes["tool_names"] = ["code_interpreter", "search"]
    poll = poll_trace(b, 300)
    document = to_jaeger_document([b.trace(), poll.trace()])
    assert set(document) == {"data", "total", "limit", "offset", "errors"}
    for exported in document["data"]:
        assert set(exported) == {"traceID", "spans", "processes", "warnings"}
        for span in exported["spans"]:
            assert set(span) == {"traceID", "spanID", "operationName", "references", "startTime", "duration",
                                 "tags", "logs", "processID", "warnings"}
            assert span["processID"] in exported["processes"] and isinstance(span["startTime"], int)
            assert all(t["type"] in {"string", "bool", "int64", "float64"} for t in span["tags"])
            assert all(r["refType"] in {"CHILD_OF", "FOLLOWS_FROM"} for r in span["references"])
    poll_root = next(s for s in document["data"][1]["spans"] if s["operationName"] == c.SPAN_PORTAL_POLL)
    assert poll_root["references"] == [{"refType": "FOLLOWS_FROM", "traceID": b.trace_id,
                                        "spanID": b.spans[0].span_id}]
    path = tmp_path / "out.json"
    path.write_text(json.dumps(document))
    back = {t.trace_id: t for t in FileSource(path).traces()}
    for original in (b, poll):
        read = back[original.trace_id]
        assert len(read.spans) == len(original.spans)
        for span in original.spans:
            again = read.by_id[span.span_id]
            assert (again.name, again.service, again.kind, again.parent_id, again.error, again.start_ns,
                    again.end_ns) == (span.name, span.service, span.kind, span.parent_id, span.error, span.start_ns,
                                      span.end_ns)
            expected = {k: json.dumps(v) if isinstance(v, list) else v for k, v in span.attributes.items()}
            assert again.attributes == expected and again.events == span.events
            assert [(k.trace_id, k.span_id) for k in again.links] == [(k.trace_id, k.span_id) for k in span.links]
    assert trace_phases(back[b.trace_id]) == trace_phases(b.trace())


@pytest.mark.parametrize(("content", "message"), [
    ("", None),
    ('{"resourceSpans": []}\nnot json at all\n{"resourceSpans": []}\n', "line 2: not JSON"),
    ("{broken", "neither OTLP/JSON lines nor a JSON document"),
    ('{"something": "else"}', "not a Jaeger JSON document"),
    ('{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "x"}]}]}]}\n', "line 1: malformed OTLP span data"),
    ('{"data": [{"spans": [{"traceID": "1"}]}]}', "malformed Jaeger span data"),
])
def test_bad_files_give_clear_errors(tmp_path: Path, content: str, message: str | None) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    if message is None:
        assert list(FileSource(path).traces()) == []
        return
    with pytest.raises(TraceSourceError, match=message):
        list(FileSource(path).traces())


def test_missing_binary_and_directory_sources_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(TraceSourceError, match="no trace file at"):
        list(FileSource(tmp_path / "nope.jsonl").traces())
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(TraceSourceError, match="neither OTLP/JSON lines nor a JSON document"):
        list(FileSource(tmp_path / "image.png").traces())
    with pytest.raises(TraceSourceError, match="cannot read"):
        list(FileSource(tmp_path).traces())


def test_orphans_become_roots_and_the_true_root_is_the_main_one() -> None:
    b = TraceBuilder()
    root = b.span("svc", "root", 0, 50)
    b.span("svc", "child", 10, 20, root)
    orphan = b.span("svc", "orphan", -5, 5)
    orphan.parent_id = "00000000deadbeef"
    (trace,) = group_traces(b.spans)
    assert [s.name for s in trace.roots] == ["orphan", "root"] and trace.root.name == "root"
