"""The trace index and the portal's trace routes over a generated traces.jsonl (no chain needed)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from benchmarks.latency_bench import generate
from services.common.settings import Settings
from services.portal import create_app
from services.portal.app import PortalConfig
from telemetry import conventions as c
from telemetry.analysis.latency import LatencyAnalysis, critical_path
from telemetry.analysis.trace_index import TraceIndex
from telemetry.analysis.trace_sources import FileSource
from telemetry.analysis.traces import Link, Span, to_otlp
from telemetry.analysis.views import latency_report
from tests.analysis.builder import chain_trace, poll_trace
from tests.analysis.test_jaeger_api import FakeJaeger
from tests.portal.conftest import FakeCore

T = TypeVar("T")
MS = 1_000_000


def with_traces(fake: FakeCore, data_dir: Path, work: Callable[[httpx.AsyncClient], Awaitable[T]],
                jaeger_url: str | None = None) -> T:
    async def run() -> T:
        app = create_app(Settings(urls={"core_api": fake.url}, data_dir=data_dir), PortalConfig(jaeger_url=jaeger_url))
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://portal") as http:
                return await work(http)
        finally:
            await app.state.waiters.stop()
            await app.state.portal_client.aclose()

    return asyncio.run(run())


def _failed_operation_with_poll(t0: int) -> list[Span]:
    trace_id, poll_id = "ab" * 16, "cd" * 16
    root = Span(trace_id, "1" * 16, "", c.SPAN_PORTAL_SUBMIT, c.PORTAL, "INTERNAL", t0, t0 + 50 * MS,
                attributes={c.ATTR_AGENT_NAME: "code-interpreter", c.ATTR_PROMPT_TEXT: "secret prompt"})
    core = Span(trace_id, "2" * 16, root.span_id, f"POST {c.ROUTE_ASYNC_COMPLETIONS}", c.CORE_API, "SERVER",
                t0 + 1 * MS, t0 + 40 * MS)
    failed = Span(trace_id, "3" * 16, core.span_id, "POST /instances/{instanceId}/codeSessions", c.CONTEXT_API,
                  "SERVER", t0 + 2 * MS, t0 + 30 * MS, error=True, status_message="pool exhausted")
    poll = Span(poll_id, "4" * 16, "", c.SPAN_PORTAL_POLL, c.PORTAL, "INTERNAL", t0 + 20 * MS, t0 + 25 * MS,
                links=[Link(trace_id, root.span_id, {})])
    return [root, core, failed, poll]


def _write(path: Path, spans: list[Span], mode: str = "a") -> None:
    with path.open(mode) as handle:
        handle.write(json.dumps(to_otlp(spans)) + "\n")


def test_the_index_finds_what_the_file_reader_finds_and_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    generate(path, 60)
    index = TraceIndex(path)
    index.refresh()
    reference = {t.trace_id: t for t in FileSource(path, settle_ns=None).traces()}
    assert set(index.recent()) == set(reference) and len(index) == 60
    starts = [index.start_ns(t) for t in index.recent()]
    assert starts == sorted(starts, reverse=True) and starts[0] == max(t.start_ns for t in reference.values())
    for trace_id in list(reference)[:10]:
        found = index.trace(trace_id)
        assert found is not None
        assert {s.span_id for s in found.trace.spans} == {s.span_id for s in reference[trace_id].spans}

    # growth: a half-written line is left for later, the rest is read from where the index stopped
    spans = _failed_operation_with_poll(max(starts) + 10**9)
    line = json.dumps(to_otlp(spans)) + "\n"
    with path.open("a") as handle:
        handle.write(line[:100])
    index.refresh()
    assert index.trace("ab" * 16) is None
    with path.open("a") as handle:
        handle.write(line[100:])
    index.refresh()
    found = index.trace("ab" * 16)
    assert found is not None and len(found.trace.spans) == 3
    assert [span.name for span, _ in found.linked_from] == [c.SPAN_PORTAL_POLL]  # the poll, linked, not mixed in
    assert index.recent()[0] == "cd" * 16  # the poll started last

    # a replaced (smaller) file is indexed again from its start
    path.unlink()
    _write(path, spans, "w")
    index.refresh()
    assert set(index.recent()) == {"ab" * 16, "cd" * 16}


def test_the_routes_page_through_operations_and_show_waterfalls(tmp_path: Path, fake_core: FakeCore) -> None:
    generate(tmp_path / "traces.jsonl", 40)
    source = list(FileSource(tmp_path / "traces.jsonl", settle_ns=None).traces())
    _write(tmp_path / "traces.jsonl", _failed_operation_with_poll(max(t.start_ns for t in source) + 10**9))

    async def work(http: httpx.AsyncClient) -> dict[str, Any]:
        pages, cursor = [], None
        while True:
            answer = (await http.get("/api/traces", params={"limit": 7, **({"before_ns": cursor} if cursor else {})}))
            assert answer.status_code == 200, answer.text
            pages.append(answer.json()["operations"])
            cursor = answer.json()["next_before_ns"]
            if cursor is None:
                break
        return {
            "pages": pages,
            "failed": (await http.get(f"/api/traces/{'ab' * 16}")).json(),
            "one": (await http.get(f"/api/traces/{source[3].trace_id}")).json(),
            "missing": await http.get(f"/api/traces/{'ef' * 16}"),
            "bad_id": await http.get("/api/traces/not-a-trace"),
            "bad_limit": await http.get("/api/traces", params={"limit": 0}),
            "bad_window": await http.get("/api/latency", params={"window": "1y"}),
            "report": (await http.get("/api/latency", params={"window": "all"})).json(),
            "page": await http.get("/traces"),
        }

    got = with_traces(fake_core, tmp_path, work)
    listed = [row for page in got["pages"] for row in page]
    assert all(len(page) <= 7 for page in got["pages"]) and len(got["pages"]) == 6
    assert len(listed) == 41 and len({r["trace_id"] for r in listed}) == 41  # every operation once, polls not listed
    assert [r["start_ns"] for r in listed] == sorted((r["start_ns"] for r in listed), reverse=True)
    first = listed[0]
    assert first["trace_id"] == "ab" * 16 and first["status"] == "Failed" and first["failed_hop"] == c.CONTEXT_API
    assert first["agent"] == "code-interpreter"

    failed = got["failed"]
    (bad,) = [s for s in failed["spans"] if s["error"]]
    assert bad["service"] == c.CONTEXT_API and bad["error_message"] == "pool exhausted"
    assert [t["trace_id"] for t in failed["linked_traces"]] == ["cd" * 16]
    assert "secret prompt" not in json.dumps(failed)  # trace data only, never attributes

    one = got["one"]
    assert len(one["spans"]) == 15 and one["phases"][-1]["phase"] == "end_to_end"
    assert [s["name"] for s in one["spans"] if s["execution"]] == [c.SPAN_CODE_EXECUTE]
    path: dict[str, int] = {}
    for section in critical_path(source[3]):  # the CLI's critical path, span by span
        path[section.span_id] = path.get(section.span_id, 0) + section.end_ns - section.start_ns
    assert {s["span_id"]: s["critical_ms"] for s in one["spans"] if s["critical_ms"]} == {
        k: round(v / 1e6, 3) for k, v in path.items() if round(v / 1e6, 3)}
    assert one["spans"][0]["depth"] == 0 and one["spans"][0]["start_ms"] == 0

    assert got["missing"].status_code == 404 and "not" in got["missing"].json()["detail"]
    for bad_answer, field in ((got["bad_id"], "trace_id"), (got["bad_limit"], "limit"), (got["bad_window"], "window")):
        assert 400 <= bad_answer.status_code < 500 and field in bad_answer.text, bad_answer.text

    # the report is the CLI's analysis of the same traces
    expected = latency_report(LatencyAnalysis().add_all(FileSource(tmp_path / "traces.jsonl", settle_ns=None).traces()))
    report = got["report"]
    assert report["hops"] == expected["hops"] and report["phases"] == expected["phases"]
    assert report["end_to_end"] == expected["end_to_end"]
    assert report["execution_histogram"] == expected["execution_histogram"] and sum(
        b["count"] for b in report["execution_histogram"]) == 40
    assert got["page"].status_code == 200 and 'id="ops"' in got["page"].text


def test_no_trace_file_yet_is_an_empty_list(tmp_path: Path, fake_core: FakeCore) -> None:
    async def work(http: httpx.AsyncClient) -> list[httpx.Response]:
        return [await http.get("/api/traces"), await http.get("/api/latency"),
                await http.get(f"/api/traces/{'ab' * 16}")]

    listing, report, trace = with_traces(fake_core, tmp_path / "empty", work)
    assert listing.status_code == 200 and listing.json()["operations"] == []
    assert report.status_code == 200 and report.json()["traces"] == 0
    assert trace.status_code == 404
    assert not os.path.exists(tmp_path / "empty" / "traces.jsonl")


def test_with_a_jaeger_url_the_routes_read_jaeger(tmp_path: Path, fake_core: FakeCore) -> None:
    start = time.time_ns() - 10 * 60 * 10**9
    operations = [chain_trace(origin_ns=start + i * 10**9) for i in range(3)]
    traces = [b.trace() for b in operations] + [poll_trace(operations[0], 300).trace()]
    jaeger = FakeJaeger(traces)
    thread = threading.Thread(target=jaeger.serve_forever, args=(0.05,), daemon=True)
    thread.start()

    async def work(http: httpx.AsyncClient) -> list[httpx.Response]:
        return [await http.get("/api/traces", params={"limit": 2}), await http.get(f"/api/traces/{traces[1].trace_id}"),
                await http.get("/api/latency", params={"window": "1h"}), await http.get(f"/api/traces/{'ef' * 16}")]

    try:
        listing, one, report, missing = with_traces(fake_core, tmp_path, work, jaeger.url)
    finally:
        jaeger.shutdown()
        jaeger.server_close()
    newest = sorted(traces[:3], key=lambda t: t.start_ns, reverse=True)
    assert [r["trace_id"] for r in listing.json()["operations"]] == [t.trace_id for t in newest[:2]]
    assert listing.json()["next_before_ns"] == newest[1].start_ns and listing.json()["source"] == jaeger.url
    assert one.status_code == 200 and len(one.json()["spans"]) == len(traces[1].spans)
    assert (report.json()["operations"], report.json()["polls"]) == (3, 1)
    assert missing.status_code == 404
    assert not (tmp_path / "traces.jsonl").exists()
