"""An index of an OTLP/JSON-lines trace file by trace id and byte offset, kept up to date as the file grows.

Each refresh reads only the bytes appended since the last one (complete lines only: a line still being
written is read next time). A line is not parsed as JSON to be indexed: the trace ids in it (a span's
own, and those of its links, so a status poll's line is found from the operation it links to) and each
span's start time are picked out by pattern. Reading a trace then parses only the lines that hold it.
A file that shrank or was replaced (another inode) is indexed again from the start.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from telemetry.analysis.traces import Link, Span, Trace, TraceSourceError, normalize_id, otlp_spans

_TRACE_ID = re.compile(rb'"traceId":\s*"([0-9a-fA-F]{32})"')
_START = re.compile(rb'"startTimeUnixNano":\s*"?(\d+)')
_CHUNK = 8 * 2**20
_PARSED_SPANS = 20_000  # spans of the most recently read lines kept parsed (a bound on memory, not lines)


@dataclass(slots=True)
class _Entry:
    offsets: list[int] = field(default_factory=list)  # lines holding a span of, or a link to, the trace
    start_ns: int = 0  # earliest span start seen (0: only links seen so far)


@dataclass(frozen=True)
class TraceWithLinks:
    trace: Trace
    linked_from: list[tuple[Span, Link]]  # spans of other traces that link to this one (status polls)


class TraceIndex:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._offset = 0
        self._identity: tuple[int, int] | None = None
        self._parsed: OrderedDict[int, list[Span]] = OrderedDict()
        self._parsed_spans = 0
        self._recent: list[str] | None = None
        self.lines = 0
        self.version = 0  # grows whenever new lines were indexed

    def refresh(self) -> None:
        with self._lock:
            try:
                stat = os.stat(self.path)
            except FileNotFoundError:
                return
            except OSError as error:
                raise TraceSourceError(f"cannot read {self.path}: {error.strerror}") from None
            identity = (stat.st_dev, stat.st_ino)
            if identity != self._identity or stat.st_size < self._offset:
                self._reset(identity)
            if stat.st_size > self._offset:
                try:
                    self._read_from(self._offset, stat.st_size)
                except OSError as error:
                    raise TraceSourceError(f"cannot read {self.path}: {error.strerror}") from None

    def _reset(self, identity: tuple[int, int]) -> None:
        self._entries.clear()
        self._parsed.clear()
        self._parsed_spans = 0
        self._offset, self.lines, self._identity, self._recent = 0, 0, identity, None
        self.version += 1

    def _read_from(self, offset: int, size: int) -> None:
        with self.path.open("rb") as handle:
            handle.seek(offset)
            pending = b""
            position = offset
            while position + len(pending) < size:
                chunk = handle.read(min(_CHUNK, size - position - len(pending)))
                if not chunk:
                    break
                data = pending + chunk
                end = data.rfind(b"\n")
                if end < 0:
                    pending = data
                    continue
                self._index_lines(data[: end + 1], position)
                position += end + 1
                pending = data[end + 1:]
        if position != self._offset:
            self._offset = position
            self._recent = None
            self.version += 1

    def _index_lines(self, block: bytes, base: int) -> None:
        start = 0
        entries = self._entries
        while start < len(block):
            end = block.index(b"\n", start)
            line = block[start:end]
            self.lines += 1
            ids = list(_TRACE_ID.finditer(line))
            if ids:
                starts = [(m.start(), int(m.group(1))) for m in _START.finditer(line)]
                seen: set[bytes] = set()
                for match in ids:
                    trace_id = match.group(1).lower()
                    if trace_id not in seen:
                        seen.add(trace_id)
                        entry = entries.get(trace_id.decode())
                        if entry is None:
                            entry = entries[trace_id.decode()] = _Entry()
                        entry.offsets.append(base + start)
                # a span's start follows its own traceId (links come after the start time)
                cursor = 0
                for position, start_ns in starts:
                    while cursor + 1 < len(ids) and ids[cursor + 1].start() < position:
                        cursor += 1
                    if ids[cursor].start() < position:
                        entry = entries[ids[cursor].group(1).lower().decode()]
                        if not entry.start_ns or start_ns < entry.start_ns:
                            entry.start_ns = start_ns
            start = end + 1

    # --- reading --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def recent(self) -> list[str]:
        """Trace ids with spans, newest start first."""
        with self._lock:
            if self._recent is None:
                own = [(e.start_ns, t) for t, e in self._entries.items() if e.start_ns]
                self._recent = [t for _, t in sorted(own, reverse=True)]
            return self._recent

    def line_count(self, trace_id: str) -> int:
        """How many lines hold the trace: a cached view of it is stale once this grows."""
        entry = self._entries.get(trace_id)
        return len(entry.offsets) if entry else 0

    def start_ns(self, trace_id: str) -> int:
        entry = self._entries.get(trace_id)
        return entry.start_ns if entry else 0

    def _line_spans(self, handle, offset: int) -> list[Span]:  # noqa: ANN001 - a binary file
        cached = self._parsed.get(offset)
        if cached is not None:
            self._parsed.move_to_end(offset)
            return cached
        handle.seek(offset)
        line = handle.readline()
        try:
            spans = list(otlp_spans(json.loads(line)))
        except ValueError as error:
            raise TraceSourceError(f"{self.path} at byte {offset}: not JSON ({error})") from None
        self._parsed[offset] = spans
        self._parsed_spans += len(spans)
        while self._parsed_spans > _PARSED_SPANS and len(self._parsed) > 1:
            self._parsed_spans -= len(self._parsed.popitem(last=False)[1])
        return spans

    def load(self, trace_ids: Iterable[str]) -> dict[str, TraceWithLinks]:
        """The traces (those found), each with the spans of other traces that link to it."""
        wanted = {normalize_id(t, 16) for t in trace_ids}
        with self._lock:
            offsets = sorted({o for t in wanted if (e := self._entries.get(t)) for o in e.offsets})
            own: dict[str, dict[str, Span]] = {}
            links: dict[str, dict[str, tuple[Span, Link]]] = {}
            if not offsets:
                return {}
            try:
                handle = self.path.open("rb")
            except OSError as error:
                raise TraceSourceError(f"cannot read {self.path}: {error.strerror}") from None
            with handle:
                for offset in offsets:
                    for span in self._line_spans(handle, offset):
                        if span.trace_id in wanted:
                            own.setdefault(span.trace_id, {})[span.span_id] = span
                        for link in span.links:
                            if link.trace_id in wanted and link.trace_id != span.trace_id:
                                links.setdefault(link.trace_id, {})[span.span_id] = (span, link)
        return {
            trace_id: TraceWithLinks(Trace(trace_id, spans.values()),
                                     sorted(links.get(trace_id, {}).values(), key=lambda pair: pair[0].start_ns))
            for trace_id, spans in own.items()
        }

    def trace(self, trace_id: str) -> TraceWithLinks | None:
        return self.load([trace_id]).get(normalize_id(trace_id, 16))
