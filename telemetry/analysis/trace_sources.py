"""Where traces are read from: a file (any of the formats below) or a Jaeger query service URL.

Files, told apart by their content:
- OTLP/JSON lines: one ``{"resourceSpans": [...]}`` per line, as the embedded exporter and the
  collector's file exporter write them. Read as a stream: one line at a time, traces handed out
  as they complete (see :class:`~telemetry.analysis.traces.TraceAssembler`). Lines of other signals
  (``resourceMetrics``, ``resourceLogs``) are skipped; an unfinished last line (a write in
  progress) is ignored.
- one OTLP/JSON document (``{"resourceSpans"}``, or Jaeger v3's ``{"result": {"resourceSpans"}}``);
- Jaeger v1 JSON: ``{"data": [...]}`` (query API answer, UI download), a bare list, or one trace.

URLs (``http://host:16686``, Jaeger's query port): the v3 API first (``/api/v3/traces`` and
``/api/v3/traces/{traceId}``, OTLP/JSON answers); where v3 is missing (a 404 that is not Jaeger's
own JSON error), the v1 API (``/api/traces``). Searches use the snake_case parameter names
(``query.service_name``, ``query.start_time_min``/``max``, ``query.search_depth``), which every
Jaeger 2.x accepts (2.19+ also takes camelCase). A v3 404 with ``{"error": ...}`` means no traces.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx

from telemetry import conventions as c
from telemetry.analysis.jaeger_json import jaeger_document_traces
from telemetry.analysis.traces import (
    DEFAULT_SETTLE_NS,
    Span,
    Trace,
    TraceAssembler,
    TraceSourceError,
    group_traces,
    normalize_id,
    otlp_spans,
)

DEFAULT_LOOKBACK_NS = 3600 * 10**9  # a Jaeger search needs a time window


class TraceSource(Protocol):
    def traces(self, since_ns: int | None = None) -> Iterator[Trace]: ...

    def trace(self, trace_id: str) -> Trace | None: ...


def open_source(spec: str, *, service: str = c.PORTAL, limit: int = 1000, timeout_s: float = 30.0) -> TraceSource:
    if spec.startswith(("http://", "https://")):
        return JaegerSource(spec, service=service, limit=limit, timeout_s=timeout_s)
    return FileSource(Path(spec))


def _document_spans(document: Any) -> Iterator[list[Span]]:
    """Span groups of one whole JSON document of any supported format."""
    if isinstance(document, dict) and isinstance(document.get("result"), dict):
        document = document["result"]
    if isinstance(document, dict) and "resourceSpans" in document:
        yield list(otlp_spans(document))
    else:
        yield from jaeger_document_traces(document)


class FileSource:
    def __init__(self, path: Path, settle_ns: int | None = DEFAULT_SETTLE_NS) -> None:
        self.path = path
        self.settle_ns = settle_ns

    def _lines(self, must_contain: str = "") -> Iterator[tuple[int, dict[str, Any]]]:
        """(line number, OTLP document) of each complete span line, or raise for a whole-document file."""
        try:
            handle = self.path.open(encoding="utf-8", errors="replace")  # binary junk fails as "not JSON"
        except FileNotFoundError:
            raise TraceSourceError(f"no trace file at {self.path}") from None
        except OSError as error:
            raise TraceSourceError(f"cannot read {self.path}: {error.strerror}") from None
        with handle:
            first = True
            for number, line in enumerate(handle, 1):
                if not first and must_contain and must_contain not in line:
                    continue
                if not line.strip():
                    continue
                try:
                    document = json.loads(line)
                except ValueError as error:
                    if first:
                        raise _WholeDocument from None
                    if not line.endswith("\n"):
                        return  # an exporter is still writing this line
                    raise TraceSourceError(f"{self.path} line {number}: not JSON ({error})") from None
                if first and not _is_otlp_line(document):
                    raise _WholeDocument
                first = False
                if isinstance(document, dict) and "resourceSpans" in document:
                    yield number, document

    def _whole(self) -> Iterator[list[Span]]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise TraceSourceError(f"{self.path}: neither OTLP/JSON lines nor a JSON document ({error})") from None
        except UnicodeDecodeError:
            raise TraceSourceError(f"{self.path}: not a text file") from None
        yield from _document_spans(document)

    def _spans(self, must_contain: str = "") -> Iterator[Span | None]:
        """Every span; ``None`` after each line (a point where complete traces may be handed out)."""
        try:
            for number, document in self._lines(must_contain):
                try:
                    yield from otlp_spans(document)
                except TraceSourceError as error:
                    raise TraceSourceError(f"{self.path} line {number}: {error}") from None
                yield None
        except _WholeDocument:
            for group in self._whole():
                yield from group
                yield None

    def traces(self, since_ns: int | None = None) -> Iterator[Trace]:
        assembler = TraceAssembler(self.settle_ns)
        for span in self._spans():
            if span is not None:
                assembler.add(span)
            else:
                yield from _since(assembler.ready(), since_ns)
        yield from _since(assembler.flush(), since_ns)

    def trace(self, trace_id: str) -> Trace | None:
        trace_id = normalize_id(trace_id, 16)
        # OTLP lines carry ids as lowercase hex: skip the lines without the id before parsing them.
        spans = [s for s in self._spans(trace_id) if s is not None and s.trace_id == trace_id]
        return Trace(trace_id, {s.span_id: s for s in spans}.values()) if spans else None


def _is_otlp_line(document: Any) -> bool:
    return isinstance(document, dict) and any(key.startswith("resource") for key in document)


class _WholeDocument(Exception):
    """The file is one JSON document, not OTLP/JSON lines."""


def _since(traces: Iterator[Trace], since_ns: int | None) -> Iterator[Trace]:
    return traces if since_ns is None else (t for t in traces if t.start_ns >= since_ns)


def rfc3339(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class JaegerSource:
    def __init__(self, base_url: str, *, service: str, limit: int, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.service = service
        self.limit = limit
        self.timeout_s = timeout_s
        self._client: httpx.Client | None = None

    def _get(self, path: str, params: dict[str, str] | None = None) -> tuple[int, Any]:
        url = self.base_url + path
        if self._client is None:  # one client (and TLS context) for every request of this source
            self._client = httpx.Client(timeout=self.timeout_s)
        try:
            response = self._client.get(url, params=params)
        except httpx.HTTPError as error:
            raise TraceSourceError(f"cannot reach Jaeger at {self.base_url}: {error}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code not in (200, 404):
            detail = _error_message(body) or response.text[:200]
            raise TraceSourceError(f"Jaeger answered {response.status_code} to {url}: {detail}")
        if response.status_code == 200 and body is None:
            raise TraceSourceError(f"Jaeger's answer to {url} is not JSON")
        return response.status_code, body

    def traces(self, since_ns: int | None = None) -> Iterator[Trace]:
        now = time.time_ns()
        start = since_ns if since_ns is not None else now - DEFAULT_LOOKBACK_NS
        found: dict[str, Trace] = {}
        for service in _names_of(self.service):  # today's name and the one earlier versions recorded
            for trace in self._search(service, start, now):
                found.setdefault(trace.trace_id, trace)
        yield from _since(iter(found.values()), since_ns)

    def _search(self, service: str, start: int, now: int) -> list[Trace]:
        status, body = self._get("/api/v3/traces", {
            "query.service_name": service,
            "query.start_time_min": rfc3339(start),
            "query.start_time_max": rfc3339(now),
            "query.search_depth": str(self.limit),
            "query.num_traces": str(self.limit),  # the name before 2.x renamed it
        })
        if status == 200:
            return group_traces(span for group in _document_spans(body) for span in group)
        if _is_v3_error(body):
            return []  # "No traces found"
        status, body = self._get("/api/traces", {
            "service": service, "start": str(start // 1000), "end": str(now // 1000), "limit": str(self.limit),
        })
        if status == 404:
            raise TraceSourceError(f"{self.base_url} serves neither Jaeger's v3 nor its v1 query API")
        return [Trace(spans[0].trace_id, spans) for spans in jaeger_document_traces(body) if spans]

    def trace(self, trace_id: str) -> Trace | None:
        trace_id = normalize_id(trace_id, 16)
        status, body = self._get(f"/api/v3/traces/{trace_id}")
        if status == 404 and not _is_v3_error(body):
            status, body = self._get(f"/api/traces/{trace_id}")
        if status == 404:
            return None
        spans = [s for group in _document_spans(body) for s in group if s.trace_id == trace_id]
        return Trace(trace_id, spans) if spans else None


def _names_of(service: str) -> tuple[str, ...]:
    """A service's name and its other one: FoundationaLLM's now, the deployment name earlier versions used."""
    now = c.service_name_now(service)
    if now != service:
        return service, now
    return service, *(old for old, new in c.SERVICE_NAMES_BEFORE.items() if new == service)


def _is_v3_error(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("error"), dict)


def _error_message(body: Any) -> str:
    if _is_v3_error(body):
        return str(body["error"].get("message", ""))
    if isinstance(body, dict) and body.get("errors"):
        return "; ".join(str(e.get("msg", e)) for e in body["errors"] if isinstance(e, dict))
    return ""
