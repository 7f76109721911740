"""The portal's trace routes: one trace's waterfall, the recent operations, the latency report of a window.

They read the trace store ``callstack trace``/``latency`` read: Jaeger's query API when FLLM_JAEGER_URL is
set, else the embedded ``<data dir>/traces.jsonl`` through an incremental index (a request reads only the
lines of the traces it shows). Routes are sync (``def``): FastAPI runs them in its thread pool, so file
reads never block the event loop.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse

from services.common.errors import ServiceError
from telemetry.analysis.latency import LatencyAnalysis
from telemetry.analysis.trace_index import TraceIndex, TraceWithLinks
from telemetry.analysis.trace_sources import JaegerSource
from telemetry.analysis.traces import Trace, TraceSourceError
from telemetry.analysis.views import latency_report, summary, waterfall

TRACE_ID = r"^[0-9a-fA-F]{32}$"
MAX_SCAN = 2000  # trace ids looked at for one page of operations
MAX_SUMMARIES = 100_000  # operation summaries kept between requests
WINDOWS_S = {"5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800, "all": None}


class TraceStore:
    def __init__(self, data_dir: Path, jaeger_url: str | None) -> None:
        self.path = data_dir / "traces.jsonl"
        self.jaeger = JaegerSource(jaeger_url, service="portal", limit=500, timeout_s=5.0) if jaeger_url else None
        self.index = TraceIndex(self.path)
        self._summaries: dict[str, tuple[int, dict[str, Any]]] = {}
        self._reports: dict[tuple[str, int], tuple[int, float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        """Index the file in the background now, so the first page view does not wait for it."""
        if self.jaeger is None:
            threading.Thread(target=self._first_index, name="trace-index", daemon=True).start()

    def _first_index(self) -> None:
        with contextlib.suppress(TraceSourceError, OSError):  # the routes report an unreadable file when asked
            self.index.refresh()

    @property
    def source(self) -> str:
        return self.jaeger.base_url if self.jaeger else str(self.path)

    def trace(self, trace_id: str) -> TraceWithLinks | None:
        if self.jaeger is not None:
            found = self.jaeger.trace(trace_id)
            return TraceWithLinks(found, []) if found else None
        self.index.refresh()
        return self.index.trace(trace_id)

    def _jaeger_traces(self, since_ns: int | None) -> list[Trace]:
        assert self.jaeger is not None
        return sorted(self.jaeger.traces(since_ns), key=lambda t: t.start_ns, reverse=True)

    def operations(self, limit: int, before_ns: int | None) -> tuple[list[dict[str, Any]], int | None]:
        """The newest operations (not status polls) that started before ``before_ns``, and the next cursor."""
        if self.jaeger is not None:
            rows = [summary(t) for t in self._jaeger_traces(None)]
            rows = [r for r in rows if r["is_operation"] and (before_ns is None or r["start_ns"] < before_ns)]
            return rows[:limit], rows[limit - 1]["start_ns"] if len(rows) > limit else None
        self.index.refresh()
        ids = [t for t in self.index.recent() if before_ns is None or self.index.start_ns(t) < before_ns]
        found: list[dict[str, Any]] = []
        scanned = 0
        while len(found) < limit and scanned < min(len(ids), MAX_SCAN):
            batch = ids[scanned:scanned + max(limit * 2, 20)]
            scanned += len(batch)
            found.extend(r for r in self._summaries_of(batch) if r["is_operation"])
        more = len(found) > limit or (scanned < len(ids))
        found = found[:limit]
        return found, found[-1]["start_ns"] if found and more else None

    def _summaries_of(self, ids: list[str]) -> list[dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        missing = []
        for trace_id in ids:
            lines = self.index.line_count(trace_id)
            cached = self._summaries.get(trace_id)
            if cached and cached[0] == lines:
                rows[trace_id] = cached[1]
            else:
                missing.append((trace_id, lines))
        if len(self._summaries) > MAX_SUMMARIES:
            self._summaries.clear()
        loaded = self.index.load(t for t, _ in missing)
        for trace_id, lines in missing:
            if trace_id in loaded:
                rows[trace_id] = summary(loaded[trace_id].trace)
                self._summaries[trace_id] = (lines, rows[trace_id])
        return [rows[t] for t in ids if t in rows]

    def latency(self, window: str, limit: int) -> dict[str, Any]:
        seconds = WINDOWS_S[window]
        since_ns = time.time_ns() - seconds * 10**9 if seconds is not None else None
        if self.jaeger is not None:
            traces = self._jaeger_traces(since_ns)
            version, capped = -1, len(traces) > limit
            traces = traces[:limit]
        else:
            self.index.refresh()
            version = self.index.version
            with self._lock:
                cached = self._reports.get((window, limit))
                if cached and cached[0] == version and time.monotonic() - cached[1] < 5:
                    return cached[2]
            ids = [t for t in self.index.recent() if since_ns is None or self.index.start_ns(t) >= since_ns]
            traces = [found.trace for found in self.index.load(ids[:limit]).values()]
            capped = len(ids) > limit
        analysis = LatencyAnalysis().add_all(sorted(traces, key=lambda t: t.start_ns))
        report = latency_report(analysis) | {"window": window, "limit": limit, "source": self.source,
                                             "capped": capped}
        with self._lock:
            self._reports[(window, limit)] = (version, time.monotonic(), report)
        return report


router = APIRouter()
TraceId = Annotated[str, PathParam(pattern=TRACE_ID, description="32 hex digits")]


def _store(request: Request) -> TraceStore:
    return request.app.state.trace_store


def _unreadable(error: TraceSourceError) -> ServiceError:
    return ServiceError(503, f"the trace store cannot be read: {error}")


@router.get("/api/traces/{trace_id}")
def trace_waterfall(trace_id: TraceId, request: Request) -> JSONResponse:
    try:
        found = _store(request).trace(trace_id.lower())
    except TraceSourceError as error:
        raise _unreadable(error) from error
    if found is None:
        raise ServiceError(404, f"trace {trace_id} is not (yet) in {_store(request).source}")
    return JSONResponse(waterfall(found), headers={"Cache-Control": "no-store"})


@router.get("/api/traces")
def recent_operations(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=200)] = 25,
    before_ns: Annotated[int | None, Query(ge=0, description="cursor: the next_before_ns of the last page")] = None,
) -> JSONResponse:
    store = _store(request)
    try:
        rows, cursor = store.operations(limit, before_ns)
    except TraceSourceError as error:
        raise _unreadable(error) from error
    return JSONResponse({"operations": rows, "next_before_ns": cursor, "source": store.source},
                        headers={"Cache-Control": "no-store"})


@router.get("/api/latency")
def latency(
    request: Request,
    window: Annotated[str, Query(pattern="^(" + "|".join(WINDOWS_S) + ")$")] = "1h",
    limit: Annotated[int, Query(ge=1, le=20000, description="most recent traces analysed")] = 2000,
) -> JSONResponse:
    try:
        report = _store(request).latency(window, limit)
    except TraceSourceError as error:
        raise _unreadable(error) from error
    return JSONResponse(report, headers={"Cache-Control": "no-store"})
