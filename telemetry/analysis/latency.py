"""Where the time goes: self time, critical path, percentiles and phases over many traces.

- Self time of a span: its duration less the time covered by its children, children clipped to the
  span's own window first (background children outlive the span that started them); overlapping
  children count once.
- Critical path (Jaeger UI's algorithm, made aware of background work): background spans that
  outlive their parent are first moved under the span that waited for them (``awaited_background``);
  then children are clipped to their parent's clipped window, and children that start after it
  ended are dropped. Then, from the end of the root, walk back:
  the last-finishing child of the current span is next; the part of the current span after that
  child's end is on the path. A span without a further child is on the path from its start, and
  the walk returns to its parent with the barrier at that start, looking for the last child that
  finished before it. One difference: Jaeger takes only children ending strictly before the
  barrier; here a child ending exactly at it counts (sequential children are common at µs
  resolution), and a child is never taken twice.
- Percentiles: linear interpolation between closest ranks (numpy's default, Excel PERCENTILE.INC).
- Hops are listed in the order they run (mean start offset in their traces), status polls' last.
- Critical-path shares: each hop's time on the critical paths of all traces but the status polls,
  over the total length of those paths (see ``telemetry.analysis.phases`` for the phases and what a poll is).
"""

from __future__ import annotations

import gc
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from telemetry import conventions as c
from telemetry.analysis.phases import PHASES, is_execution, is_poll_trace, trace_phases
from telemetry.analysis.traces import Span, Trace


def self_times(trace: Trace) -> dict[str, int]:
    """Self time in ns of every span of the trace."""
    result = {}
    for span in trace.spans:
        covered, cursor = 0, span.start_ns
        for child in trace.children.get(span.span_id, ()):  # in start order
            start, end = max(child.start_ns, cursor), min(child.end_ns, span.end_ns)
            if end > start:
                covered += end - start
                cursor = end
        result[span.span_id] = span.duration_ns - covered
    return result


@dataclass(frozen=True, slots=True)
class Section:
    span_id: str
    start_ns: int
    end_ns: int


AWAIT_SLACK_NS = 20_000_000


def awaited_background(trace: Trace) -> dict[str, list[Span]]:
    """Background work, moved under the span that waited for it.

    A span that outlives its parent in the same process (the LangChain workflow after its 202) would
    be clipped away, and the code execution would never be on the critical path, though the client
    waits for exactly that work. It is attached instead to the shortest span that was running when
    it ended and is neither its ancestor nor inside it (``portal.wait_for_result``), as what that
    span waited for. (A server span ending a little after its caller's client span is not background
    work: the two clocks are different processes'.) Only the outermost background work moves: work that
    outlives background work it was started from (a code session released after the workflow that
    used it ended) is nobody's wait, and stays clipped to it.
    """
    moved: dict[str, list[Span]] = {}
    moved_ids: set[str] = set()
    for span in trace.spans:  # in start order: ancestors first
        parent = trace.by_id.get(span.parent_id) if span.parent_id else None
        if parent is None or span.end_ns <= parent.end_ns or span.service != parent.service:
            continue
        if any(a.span_id in moved_ids for a in trace.ancestors(span)):
            continue
        excluded = {span.span_id, *(d.span_id for d in trace.descendants(span)),
                    *(a.span_id for a in trace.ancestors(span))}
        others = [w for w in trace.spans if w.span_id not in excluded and w.start_ns < span.end_ns]
        waiting = [w for w in others if span.end_ns <= w.end_ns]
        if not waiting:
            # The waiter sees the end (the stored status) a moment before the background span closes: its
            # last write's answer is still on the way back to it.
            waiting = [w for w in others if span.start_ns < w.end_ns and span.end_ns - w.end_ns <= AWAIT_SLACK_NS]
        if waiting:
            moved.setdefault(min(waiting, key=lambda w: w.duration_ns).span_id, []).append(span)
            moved_ids.add(span.span_id)
    return moved


def _clipped_tree(trace: Trace, root: Span
                  ) -> tuple[dict[str, tuple[int, int]], dict[str, list[str]], dict[str, str]]:
    """Windows clipped to the parent's (top-down), children by clipped end (latest first), parents."""
    windows = {root.span_id: (root.start_ns, root.end_ns)}
    kids: dict[str, list[str]] = {}
    moved = awaited_background(trace)
    moved_ids = {span.span_id for spans in moved.values() for span in spans}
    parents: dict[str, str] = {}
    stack = [root.span_id]
    while stack:
        parent_id = stack.pop()
        p_start, p_end = windows[parent_id]
        kept = []
        children = [k for k in trace.children.get(parent_id, ()) if k.span_id not in moved_ids]
        for child in children + moved.get(parent_id, []):
            if child.span_id in windows or child.start_ns >= p_end or child.end_ns <= p_start:
                continue
            windows[child.span_id] = (max(child.start_ns, p_start), min(child.end_ns, p_end))
            kept.append(child.span_id)
        kept.sort(key=lambda s: windows[s][1], reverse=True)
        kids[parent_id] = kept
        parents.update(dict.fromkeys(kept, parent_id))
        stack.extend(kept)
    return windows, kids, parents


def critical_path(trace: Trace, root: Span | None = None) -> list[Section]:
    """Sections of the critical path from the end of ``root`` (default: the trace's root) backwards."""
    root = root or trace.root
    windows, kids, parents = _clipped_tree(trace, root)
    path: list[Section] = []
    visited: set[str] = set()
    span_id, barrier = root.span_id, windows[root.span_id][1]
    while True:
        start, end = windows[span_id][0], barrier
        child = next((k for k in kids[span_id] if k not in visited and windows[k][1] <= barrier), None)
        if child is not None:
            visited.add(child)
            if windows[child][1] < end:
                path.append(Section(span_id, windows[child][1], end))
            span_id, barrier = child, windows[child][1]
            continue
        if start < end:
            path.append(Section(span_id, start, end))
        if span_id == root.span_id:
            return path
        span_id, barrier = parents[span_id], start


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Reading builds millions of small objects and frees them by reference counting (they form no
    cycles); the cycle collector would scan them again and again for nothing: half the CPU time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of sorted values, interpolating linearly between ranks."""
    if not ordered:
        raise ValueError("percentile of no values")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _ms(value: float) -> float:
    return round(value, 3)


@dataclass
class _Hop:
    durations: array = field(default_factory=lambda: array("d"))
    selfs: array = field(default_factory=lambda: array("d"))
    errors: int = 0
    critical_ns: int = 0
    offset_ns: int = 0  # summed start offsets from the trace start: orders hops as the chain runs
    outside_polls: bool = False  # seen in a trace that is not a status poll (those hops come first)


def _stats(values: Iterable[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50_ms": _ms(percentile(ordered, 50)), "p95_ms": _ms(percentile(ordered, 95)),
            "p99_ms": _ms(percentile(ordered, 99))}


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: object) -> float | None:
    """An attribute's numeric value (a bool is not one)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass
class _CodeUsage:
    """What executions used of their sessions' cgroups (the code.execute attributes), where they have one."""

    cpu_ms: array = field(default_factory=lambda: array("d"))
    wall_ms: array = field(default_factory=lambda: array("d"))
    throttled_executions: int = 0
    oom_kills: int = 0
    oom_executions: int = 0

    def add(self, attributes: Mapping[str, object], wall_ms: float) -> None:
        cpu_s = _number(attributes.get(c.ATTR_CODE_CPU_TIME))
        if cpu_s is None:
            return
        self.cpu_ms.append(cpu_s * 1000)
        self.wall_ms.append(wall_ms)
        self.throttled_executions += bool(_count(attributes.get(c.ATTR_CODE_CPU_THROTTLED)))
        kills = _count(attributes.get(c.ATTR_CODE_OOM_KILLS)) or 0
        self.oom_kills += kills
        self.oom_executions += kills > 0

    def to_dict(self) -> dict[str, Any]:
        cpu = _stats(self.cpu_ms)
        wall = sum(self.wall_ms)
        return {
            "executions": len(self.cpu_ms), "cpu_p50_ms": cpu["p50_ms"], "cpu_p95_ms": cpu["p95_ms"],
            "cpu_p99_ms": cpu["p99_ms"], "cpu_of_wall": round(sum(self.cpu_ms) / wall, 4) if wall else 0.0,
            "throttled_executions": self.throttled_executions,
            "oom_kills": self.oom_kills, "executions_with_oom_kills": self.oom_executions,
        }


class LatencyAnalysis:
    """Accumulates traces one at a time (memory: a few numbers per span, never the spans)."""

    def __init__(self) -> None:
        self.traces = 0
        self.operations = 0
        self.polls = 0
        self.spans = 0
        self.hops: dict[tuple[str, str], _Hop] = {}
        self.critical_total_ns = 0
        self.phases: dict[str, array] = {name: array("d") for name, _ in PHASES}
        self.end_to_end = array("d")
        # code.execution.time_ms as the data plane reported it: whole ms (the spans' durations are the figure)
        self.interpreter_ms = array("d")
        self.code_usage = _CodeUsage()

    def add(self, trace: Trace) -> None:
        self.traces += 1
        self.spans += len(trace.spans)
        selfs = self_times(trace)
        poll = is_poll_trace(trace)
        hops, origin = self.hops, trace.start_ns
        for span in trace.spans:
            key = (span.service, span.name)
            hop = hops.get(key)
            if hop is None:
                hop = hops[key] = _Hop()
            hop.durations.append((span.end_ns - span.start_ns) / 1e6)
            hop.selfs.append(selfs[span.span_id] / 1e6)
            hop.errors += span.error
            hop.offset_ns += span.start_ns - origin
            hop.outside_polls |= not poll
            if is_execution(span.service, span.name):
                reported = _number(span.attributes.get(c.ATTR_CODE_EXECUTION_MS))
                if reported is not None:
                    self.interpreter_ms.append(reported)
                self.code_usage.add(span.attributes, hop.durations[-1])
        if poll:
            self.polls += 1
            return
        for section in critical_path(trace):
            length = section.end_ns - section.start_ns
            self.hops[trace.by_id[section.span_id].hop].critical_ns += length
            self.critical_total_ns += length
        phases = trace_phases(trace)
        if phases is not None:
            self.operations += 1
            for name, value in phases.items():
                if value is not None:
                    (self.end_to_end if name == "end_to_end" else self.phases[name]).append(value)

    def add_all(self, traces: Iterable[Trace]) -> LatencyAnalysis:
        with _gc_paused():
            for trace in traces:
                self.add(trace)
        return self

    def hop_rows(self) -> list[dict[str, Any]]:
        rows = []
        def running_order(item: tuple[tuple[str, str], _Hop]) -> tuple[bool, float]:
            return not item[1].outside_polls, item[1].offset_ns / len(item[1].durations)

        for (service, name), hop in sorted(self.hops.items(), key=running_order):
            selfs = _stats(hop.selfs)
            rows.append({
                "service": service, "span": name, "count": len(hop.durations), "errors": hop.errors,
                **_stats(hop.durations),
                "self_p50_ms": selfs["p50_ms"], "self_p95_ms": selfs["p95_ms"],
                "critical_path_share": round(hop.critical_ns / self.critical_total_ns, 4)
                if self.critical_total_ns else 0.0,
            })
        return rows

    def phase_rows(self) -> list[dict[str, Any]]:
        total = sum(self.end_to_end)
        rows = []
        for name, description in PHASES:
            values = self.phases[name]
            row: dict[str, Any] = {"phase": name, "description": description, "count": len(values)}
            if values:
                row |= _stats(values) | {"mean_ms": _ms(sum(values) / len(values)),
                                         "share": round(sum(values) / total, 4) if total else 0.0}
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "traces": self.traces, "operations": self.operations, "polls": self.polls, "spans": self.spans,
            "hops": self.hop_rows(), "phases": self.phase_rows(),
        }
        if self.code_usage.cpu_ms:
            result["code_sessions"] = self.code_usage.to_dict()
        if self.end_to_end:
            result["end_to_end"] = {"count": len(self.end_to_end), **_stats(self.end_to_end),
                                    "mean_ms": _ms(sum(self.end_to_end) / len(self.end_to_end))}
        return result

    def execution_durations(self) -> list[float]:
        """Durations (ms) of every interpreter run span, whichever provider ran it."""
        return [d for (service, name), hop in self.hops.items() if is_execution(service, name) for d in hop.durations]
