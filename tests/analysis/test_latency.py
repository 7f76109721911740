"""Self time, critical path, percentiles and phases on hand-made traces with known timings.

The chain fixture (tests/analysis/builder.py, times in ms from the trace start):

    portal.submit 0-1000
      portal POST 1-60
        core POST 5-55
          gatekeeper POST 8-50 [check_prompt 9-14]
            orchestration POST 15-48
              orchestration.build 16-30 [context codeSessions 18-26]
              state POST operation 31-34
              langchain POST 35-45 (202)
                state PUT (InProgress) 36-38
                langchain.workflow 40-900        outlives its parent
                  chat 41-100
                  langchain.tool_call 110-700
                    context executeCode 112-690
                      DynamicSessions POST /executions 115-685
                        code_session.acquire 116-150
                        execute_tool code_interpreter 160-680
                  langchain.write_result 800-880
                    state POST result 805-830
                    state PUT (Completed) 835-870
      portal.wait_for_result 60-995
"""

from __future__ import annotations

import pytest

from telemetry import conventions as c
from telemetry.analysis.latency import LatencyAnalysis, critical_path, percentile, self_times
from telemetry.analysis.phases import PHASE_NAMES, trace_phases
from tests.analysis.builder import MS, ORIGIN_NS, TraceBuilder, chain_trace, poll_trace


def by_name(builder: TraceBuilder, name: str, service: str | None = None) -> str:
    return next(s.span_id for s in builder.spans if s.name == name and service in (None, s.service))


def test_self_time_subtracts_children_clipped_to_the_parent_window_and_counted_once() -> None:
    b = chain_trace()
    selfs = {k: v / MS for k, v in self_times(b.trace()).items()}
    assert selfs[by_name(b, c.SPAN_PORTAL_SUBMIT)] == 6  # 1000 - [1,60] - [60,995]
    assert selfs[by_name(b, c.SPAN_LANGCHAIN_WORKFLOW)] == 131  # 860 - 59 - 590 - 80
    # the 202 span: 10 ms less the PUT (2) and the workflow clipped to [40, 45] (5)
    assert selfs[by_name(b, f"POST {c.ROUTE_ASYNC_COMPLETIONS}", c.LANGCHAIN_API)] == 3
    assert selfs[by_name(b, "POST /executions")] == 16  # 570 - 34 - 520
    assert selfs[by_name(b, c.SPAN_CODE_EXECUTE)] == 520

    overlap = TraceBuilder()
    parent = overlap.span("svc", "parent", 0, 100)
    overlap.span("svc", "a", 10, 50, parent)
    overlap.span("svc", "b", 30, 70, parent)  # overlaps a: the union [10, 70] counts once
    overlap.span("svc", "c", 90, 130, parent)  # outlives the parent: [90, 100] counts
    overlap.span("svc", "d", -20, 5, parent)  # started before it: [0, 5] counts
    assert self_times(overlap.trace())[parent.span_id] == (100 - 60 - 10 - 5) * MS


def test_critical_path_walks_back_through_the_last_finishing_children() -> None:
    b = chain_trace()
    trace = b.trace()
    sections = critical_path(trace)
    names = {s.span_id: (s.service, s.name) for s in trace.spans}
    got = [(names[s.span_id][1], (s.start_ns - ORIGIN_NS) / MS, (s.end_ns - ORIGIN_NS) / MS) for s in sections]
    route = f"POST {c.ROUTE_ASYNC_COMPLETIONS}"
    execute_code = f"POST {c.ROUTE_EXECUTE_CODE}"
    assert got == [
        (c.SPAN_PORTAL_SUBMIT, 995, 1000),
        # The client waits for the background workflow: it is moved under the wait, not clipped away.
        (c.SPAN_PORTAL_WAIT, 900, 995),
        (c.SPAN_LANGCHAIN_WORKFLOW, 880, 900),
        (c.SPAN_LANGCHAIN_WRITE_RESULT, 870, 880),
        (f"PUT {c.ROUTE_OPERATION}", 835, 870),
        (c.SPAN_LANGCHAIN_WRITE_RESULT, 830, 835),
        (f"POST {c.ROUTE_OPERATION_RESULT}", 805, 830),
        (c.SPAN_LANGCHAIN_WRITE_RESULT, 800, 805),
        (c.SPAN_LANGCHAIN_WORKFLOW, 700, 800),
        (c.SPAN_LANGCHAIN_TOOL_CALL, 690, 700),
        (execute_code, 685, 690),
        ("POST /executions", 680, 685),
        (c.SPAN_CODE_EXECUTE, 160, 680),
        ("POST /executions", 150, 160),
        (c.SPAN_CODE_SESSION_ACQUIRE, 116, 150),
        ("POST /executions", 115, 116),
        (execute_code, 112, 115),
        (c.SPAN_LANGCHAIN_TOOL_CALL, 110, 112),
        (c.SPAN_LANGCHAIN_WORKFLOW, 100, 110),
        # Before the wait began (the 202 still on its way back), the path is the submission's.
        ("chat local-deterministic", 60, 100),
        ("POST", 55, 60),
        (route, 50, 55),  # core
        (route, 48, 50),  # gatekeeper
        (route, 45, 48),  # orchestration
        (route, 38, 45),  # langchain
        (f"PUT {c.ROUTE_OPERATION}", 36, 38),
        (route, 35, 36),
        (route, 34, 35),  # orchestration
        (f"POST {c.ROUTE_OPERATION}", 31, 34),
        (route, 30, 31),
        (c.SPAN_ORCHESTRATION_BUILD, 26, 30),
        (f"POST {c.ROUTE_CODE_SESSIONS}", 18, 26),
        (c.SPAN_ORCHESTRATION_BUILD, 16, 18),
        (route, 15, 16),
        (route, 14, 15),  # gatekeeper
        (c.SPAN_GATEKEEPER_CHECK, 9, 14),
        (route, 8, 9),
        (route, 5, 8),  # core
        ("POST", 1, 5),
        (c.SPAN_PORTAL_SUBMIT, 0, 1),
    ]
    assert sum(s.end_ns - s.start_ns for s in sections) == 1000 * MS


def test_critical_path_takes_sequential_children_and_skips_a_child_that_ends_after_the_barrier() -> None:
    b = TraceBuilder()
    root = b.span("svc", "root", 0, 100)
    first = b.span("svc", "first", 10, 40, root)
    b.span("svc", "overlapping", 35, 45, root)  # ends after "second" starts: not on the path
    second = b.span("svc", "second", 40, 90, root)
    sections = [(s.span_id, (s.start_ns - ORIGIN_NS) / MS, (s.end_ns - ORIGIN_NS) / MS)
                for s in critical_path(b.trace())]
    assert sections == [(root.span_id, 90, 100), (second.span_id, 40, 90), (first.span_id, 10, 40),
                        (root.span_id, 0, 10)]


def test_percentiles_interpolate_linearly_between_ranks() -> None:
    values = [100.0 * i for i in range(1, 11)]
    assert percentile(values, 50) == 550
    assert percentile(values, 95) == pytest.approx(955)
    assert percentile(values, 99) == pytest.approx(991)
    assert percentile([7.0], 99) == 7
    with pytest.raises(ValueError):
        percentile([], 50)


def test_phases_cut_the_end_to_end_time_at_the_documented_boundaries() -> None:
    phases = trace_phases(chain_trace().trace())
    assert phases == {
        "portal_to_core": 5, "gatekeeper": 7, "core": 3, "orchestration_build": 6, "code_session_create": 8,
        "orchestration_other": 6, "agent": 75, "queue_wait": 50, "execution": 520, "after_execution": 120,
        "result_write": 70, "poll_delay": 125, "end_to_end": 995,
    }
    assert sum(phases[name] for name in PHASE_NAMES) == phases["end_to_end"]


def test_a_bypassed_gatekeeper_is_zero_and_missing_hops_are_absent_not_errors() -> None:
    bypassed = trace_phases(chain_trace(gatekeeper=False).trace())
    assert bypassed["gatekeeper"] == 0 and bypassed["core"] == 10
    assert sum(bypassed[name] for name in PHASE_NAMES) == bypassed["end_to_end"] == 995

    b = chain_trace()
    b.spans = [s for s in b.spans if s.name not in (c.SPAN_CODE_EXECUTE, c.SPAN_PORTAL_WAIT)]
    no_code = trace_phases(b.trace())  # the agent ran no code, and the portal did not wait
    assert no_code["execution"] is None and no_code["queue_wait"] is None and no_code["after_execution"] is None
    assert no_code["agent"] == 765  # the 202's start to the result write
    assert no_code["poll_delay"] is None and no_code["end_to_end"] == 1000  # the root's end without the wait
    assert no_code["result_write"] == 70
    assert sum(v for k, v in no_code.items() if k != "end_to_end" and v is not None) == 1000 - 125 - 5

    assert trace_phases(poll_trace(chain_trace(), 300).trace()) is None


def test_analysis_aggregates_hops_phases_and_critical_shares_over_traces() -> None:
    operations = [chain_trace(execution_ms=100 * i, exec_error=(i == 3)) for i in range(1, 11)]
    polls = [poll_trace(operations[0], 200), poll_trace(operations[0], 400)]
    analysis = LatencyAnalysis().add_all(b.trace() for b in operations + polls)
    result = analysis.to_dict()
    assert (result["traces"], result["operations"], result["polls"]) == (12, 10, 2)
    assert result["spans"] == 10 * 22 + 2 * 3
    hops = {(h["service"], h["span"]): h for h in result["hops"]}
    # Critical paths cover each operation's root: 480 + i*100 ms.
    total = sum(480 + 100 * i for i in range(1, 11))
    execute = hops[(c.DYNAMIC_SESSIONS, c.SPAN_CODE_EXECUTE)]
    assert execute == {
        "service": c.DYNAMIC_SESSIONS, "span": c.SPAN_CODE_EXECUTE, "count": 10, "errors": 1,
        "p50_ms": 550.0, "p95_ms": 955.0, "p99_ms": 991.0, "self_p50_ms": 550.0, "self_p95_ms": 955.0,
        # The client waits for the background workflow, so every execution is wholly on the path.
        "critical_path_share": round(sum(100 * i for i in range(1, 11)) / total, 4),
    }
    assert hops[(c.STATE_API, f"PUT {c.ROUTE_OPERATION}")]["count"] == 20
    assert hops[(c.PORTAL, c.SPAN_PORTAL_POLL)]["count"] == 2
    # Shares over the operations only: the wait's own part is the 95 ms after the workflow ended.
    assert hops[(c.PORTAL, c.SPAN_PORTAL_WAIT)]["critical_path_share"] == round(10 * 95 / total, 4)
    assert hops[(c.CORE_API, "GET " + c.ROUTE_COMPLETION_STATUS)]["critical_path_share"] == 0.0
    assert sum(h["critical_path_share"] for h in result["hops"]) == pytest.approx(1, abs=1e-3)
    # hops come in the order they run
    order = [h["span"] for h in result["hops"] if h["service"] == c.PORTAL]
    assert order.index(c.SPAN_PORTAL_SUBMIT) < order.index("POST") < order.index(c.SPAN_PORTAL_WAIT)

    phases = {p["phase"]: p for p in result["phases"]}
    assert phases["execution"]["count"] == 10
    assert (phases["execution"]["p50_ms"], phases["execution"]["p95_ms"]) == (550.0, 955.0)
    assert phases["gatekeeper"]["p99_ms"] == 7.0
    assert phases["poll_delay"]["mean_ms"] == 125.0
    assert result["end_to_end"] == {"count": 10, "p50_ms": 1025.0, "p95_ms": 1430.0, "p99_ms": 1466.0,
                                    "mean_ms": 1025.0}
    assert phases["execution"]["share"] == round(5500 / 10250, 4)
    assert analysis.execution_durations() == [100.0 * i for i in range(1, 11)]
    assert list(analysis.interpreter_ms) == [100.0 * i - 20 for i in range(1, 11)]


def test_background_work_that_closes_just_after_the_client_saw_its_end_is_still_what_the_wait_waited_for() -> None:
    # The status write's answer is still on its way back to the workflow when the client sees Completed:
    # the workflow span closes 1 ms after the wait.
    b = TraceBuilder()
    root = b.span(c.PORTAL, c.SPAN_PORTAL_SUBMIT, 0, 100)
    post = b.span(c.PORTAL, "POST", 1, 8, root, "CLIENT")
    server = b.server(c.LANGCHAIN_API, "POST", c.ROUTE_ASYNC_COMPLETIONS, 2, 7, post)
    flow = b.span(c.LANGCHAIN_API, c.SPAN_LANGCHAIN_WORKFLOW, 6, 91, server)
    b.span(c.DYNAMIC_SESSIONS, c.SPAN_CODE_EXECUTE, 20, 80, flow)
    b.span(c.PORTAL, c.SPAN_PORTAL_WAIT, 9, 90, root)
    names = {s.span_id: s.name for s in b.trace().spans}
    on_path = {names[s.span_id] for s in critical_path(b.trace())}
    assert c.SPAN_CODE_EXECUTE in on_path and c.SPAN_LANGCHAIN_WORKFLOW in on_path


def _operation(activities: bool) -> TraceBuilder:
    """A completion with FoundationaLLM's own SERVER activities inside the request spans (or without), and a
    code session released in the background after the workflow ended, past the client's wait."""
    b = TraceBuilder()
    root = b.span(c.PORTAL, c.SPAN_PORTAL_SUBMIT, 0, 100)
    post = b.span(c.PORTAL, "POST", 1, 12, root, "CLIENT")
    core = b.server(c.CORE_API, "POST", c.ROUTE_ASYNC_COMPLETIONS, 2, 11, post)
    if activities:  # nested in the request span, as the original's Core API does
        core = b.span(c.CORE_API, c.SPAN_FLLM_CORE_START_COMPLETION, 2.5, 10.5, core, "SERVER")
    call = b.span(c.CORE_API, "POST", 3, 10, core, "CLIENT")
    orch = b.server(c.ORCHESTRATION_API, "POST", c.ROUTE_ASYNC_COMPLETIONS, 3.5, 9.5, call)
    lang = b.server(c.LANGCHAIN_API, "POST", c.ROUTE_ASYNC_COMPLETIONS, 4, 9, orch)
    if activities:
        lang = b.span(c.LANGCHAIN_API, c.SPAN_FLLM_LANGCHAIN_SUBMIT, 4.5, 8.5, lang, "SERVER")
    flow = b.span(c.LANGCHAIN_API, c.SPAN_LANGCHAIN_WORKFLOW, 8, 90, lang, "SERVER" if activities else "INTERNAL")
    tool = b.span(c.LANGCHAIN_API, c.SPAN_LANGCHAIN_TOOL_CALL, 20, 70, flow)
    b.span(c.DYNAMIC_SESSIONS, c.SPAN_CODE_EXECUTE, 30, 60, tool)
    b.span(c.LANGCHAIN_API, "langchain.release_code_session", 72, 96, flow)  # nobody waits for it
    write = b.span(c.LANGCHAIN_API, c.SPAN_LANGCHAIN_WRITE_RESULT, 73, 89, flow)
    b.server(c.STATE_API, "PUT", c.ROUTE_OPERATION, 80, 88, write, **{c.ATTR_OPERATION_STATUS: "Completed"})
    b.span(c.PORTAL, c.SPAN_PORTAL_WAIT, 12, 99, root)
    return b


def test_the_originals_server_activities_and_late_background_work_change_no_phase_and_keep_the_path() -> None:
    plain, with_activities = _operation(False).trace(), _operation(True).trace()
    assert trace_phases(with_activities) == trace_phases(plain)
    phases = trace_phases(with_activities)
    assert phases is not None and (phases["execution"], phases["result_write"], phases["poll_delay"]) == (30, 15, 11)
    for trace in (plain, with_activities):
        names = {s.span_id: s.name for s in trace.spans}
        on_path: dict[str, int] = {}
        for section in critical_path(trace):
            on_path[names[section.span_id]] = on_path.get(names[section.span_id], 0) + section.end_ns - section.start_ns
        # the workflow the client waited for is on the path with its interpreter run, whole; the release
        # that outlived it only as far as the workflow ran (72-90), not to its own end
        assert on_path[c.SPAN_CODE_EXECUTE] == 30 * MS and on_path["langchain.release_code_session"] == 18 * MS
        assert sum(on_path.values()) == trace.root.duration_ns
