"""Reading from Jaeger's query API over real HTTP on loopback: v3 first, v1 where v3 is missing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from telemetry import conventions as c
from telemetry.analysis.jaeger_json import to_jaeger_trace
from telemetry.analysis.latency import LatencyAnalysis
from telemetry.analysis.trace_sources import open_source
from telemetry.analysis.traces import Trace, TraceSourceError, to_otlp
from tests.analysis.builder import chain_trace, poll_trace

NO_TRACES = {"error": {"httpCode": 404, "message": "No traces found"}}


class FakeJaeger(ThreadingHTTPServer):
    """Answers as Jaeger 2.x does: OTLP/JSON under "result" on v3, {"data"} on v1, Go's 404 when a route is absent."""

    def __init__(self, traces: list[Trace], v3: bool = True) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.traces, self.v3 = traces, v3
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.fail_with: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: FakeJaeger

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any, raw: bool = False) -> None:
        data = body.encode() if raw else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8" if raw or status != 200 else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        self.server.requests.append((url.path, query))
        if self.server.fail_with:
            return self._send(self.server.fail_with, {"error": {"httpCode": self.server.fail_with,
                                                                "message": "storage unavailable"}})
        traces = {t.trace_id: t for t in self.server.traces}
        if url.path.startswith("/api/v3/"):
            if not self.server.v3:
                return self._send(404, "404 page not found\n", raw=True)
            if url.path == "/api/v3/traces":
                if "query.start_time_min" not in query or "query.start_time_max" not in query:
                    return self._send(400, {"error": {"httpCode": 400, "message": "query.start_time_min and "
                                                                                  "query.start_time_max are required"}})
                low, high = (datetime.fromisoformat(query[k][0]).timestamp() * 1e9
                             for k in ("query.start_time_min", "query.start_time_max"))
                found = [t for t in traces.values() if low <= t.start_ns <= high]
                spans = [s for t in found for s in t.spans]
                return self._send(200, {"result": to_otlp(spans)}) if spans else self._send(404, NO_TRACES)
            trace = traces.get(url.path.rsplit("/", 1)[1])
            return self._send(200, {"result": to_otlp(trace.spans)}) if trace else self._send(404, {
                "error": {"httpCode": 404, "message": "trace not found"}})
        if url.path == "/api/traces":
            low, high = int(query["start"][0]) * 1000, int(query["end"][0]) * 1000
            found = [to_jaeger_trace(t) for t in traces.values() if low <= t.start_ns <= high]
            return self._send(200, {"data": found, "total": 0, "limit": 0, "offset": 0, "errors": None})
        if url.path.startswith("/api/traces/"):
            trace = traces.get(url.path.rsplit("/", 1)[1])
            if trace is None:
                return self._send(404, {"data": None, "total": 0, "limit": 0, "offset": 0,
                                        "errors": [{"code": 404, "msg": "trace not found"}]})
            return self._send(200, {"data": [to_jaeger_trace(trace)], "total": 0, "limit": 0, "offset": 0,
                                    "errors": None})
        return self._send(404, "404 page not found\n", raw=True)


def _now_ns() -> int:
    return int(datetime.now().timestamp() * 1e9)


@pytest.fixture()
def recent() -> list[Trace]:
    start = _now_ns() - 10 * 60 * 10**9  # ten minutes ago
    ops = [chain_trace(origin_ns=start + i * 10**9) for i in range(3)]
    return [b.trace() for b in ops] + [poll_trace(ops[0], 300).trace()]


@pytest.fixture(params=[True, False], ids=["v3", "v1-fallback"])
def jaeger(request: pytest.FixtureRequest, recent: list[Trace]) -> Iterator[FakeJaeger]:
    server = FakeJaeger(recent, v3=request.param)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_search_reads_the_same_traces_through_either_api(jaeger: FakeJaeger, recent: list[Trace]) -> None:
    source = open_source(jaeger.url + "/", service="portal", limit=50)
    got = {t.trace_id: len(t.spans) for t in source.traces(since_ns=_now_ns() - 3600 * 10**9)}
    assert got == {t.trace_id: len(t.spans) for t in recent}
    result = LatencyAnalysis().add_all(source.traces()).to_dict()
    assert (result["operations"], result["polls"]) == (3, 1)
    assert next(p for p in result["phases"] if p["phase"] == "execution")["p50_ms"] == 520.0
    path, query = jaeger.requests[0]
    assert path == "/api/v3/traces"
    assert query["query.service_name"] == ["portal"] and query["query.search_depth"] == ["50"]
    if not jaeger.v3:
        path, query = jaeger.requests[1]
        assert path == "/api/traces" and query["service"] == ["portal"] and query["limit"] == ["50"]


def test_get_one_trace_and_a_missing_one(jaeger: FakeJaeger, recent: list[Trace]) -> None:
    source = open_source(jaeger.url)
    trace = source.trace(recent[0].trace_id)
    assert trace is not None and len(trace.spans) == 22 and trace.root.name == "portal.submit"
    assert source.trace("ab" * 16) is None
    asked = [f"/api/v3/traces/{tid}" if v3 else f"/api/traces/{tid}" for tid in (recent[0].trace_id, "ab" * 16)
             for v3 in ((True,) if jaeger.v3 else (True, False))]
    assert [p for p, _ in jaeger.requests] == asked


def test_a_search_window_without_traces_is_empty_not_a_fallback(jaeger: FakeJaeger) -> None:
    jaeger.traces = []
    assert list(open_source(jaeger.url).traces(since_ns=_now_ns() - 10**9)) == []
    one_search = ["/api/v3/traces"] if jaeger.v3 else ["/api/v3/traces", "/api/traces"]
    assert [p for p, _ in jaeger.requests] == one_search * 2  # UserPortal, then "portal" of earlier traces
    asked = [q.get("query.service_name", q.get("service")) for _, q in jaeger.requests]
    assert asked == [[name] for name in (c.PORTAL, "portal") for _ in one_search]


def test_jaeger_errors_and_unreachable_hosts_are_clear(jaeger: FakeJaeger) -> None:
    jaeger.fail_with = 500
    with pytest.raises(TraceSourceError, match="Jaeger answered 500 .*storage unavailable"):
        list(open_source(jaeger.url).traces())
    closed = FakeJaeger([])
    url = closed.url
    closed.server_close()
    with pytest.raises(TraceSourceError, match="cannot reach Jaeger at"):
        open_source(url, timeout_s=2).trace("ab" * 16)
