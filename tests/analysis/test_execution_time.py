"""Code execution time from the span that times the run, never the data plane's whole milliseconds:
the analysis (``execution_ms``) and the figures `callstack bench` prints from it."""

from __future__ import annotations

import argparse
import io
import platform
from pathlib import Path

import pytest

from benchmarks import host_speed
from benchmarks.chain_bench import Side, analyse_traces, print_text, report
from services.launcher import Chain
from telemetry import conventions as c
from telemetry.analysis.latency import LatencyAnalysis
from telemetry.analysis.phases import execution_ms, is_execution
from telemetry.analysis.report import render_report
from telemetry.analysis.trace_sources import FileSource
from telemetry.analysis.waterfall import render_latency
from tests.analysis.builder import TraceBuilder, chain_trace, poll_trace, write_jsonl

CHAIN_RUN = Path(__file__).resolve().parents[1] / "fixtures" / "chain-run.traces.jsonl"


def sub_millisecond_run(run_ms: float) -> TraceBuilder:
    """A completion whose interpreter run lasted ``run_ms`` (< 1 ms) and reported 0 whole ms, as print(1) does."""
    b = chain_trace(execution_ms=run_ms)
    (run,) = [s for s in b.spans if s.name == c.SPAN_CODE_EXECUTE]
    run.attributes[c.ATTR_CODE_EXECUTION_MS] = 0
    return b


def test_a_run_that_reported_0_ms_but_lasted_0_8_ms_is_0_8_ms() -> None:
    assert execution_ms(sub_millisecond_run(0.8).trace()) == pytest.approx(0.8, abs=1e-9)


def test_the_runs_of_a_trace_add_up_and_a_trace_without_code_has_none() -> None:
    b = TraceBuilder()
    root = b.span(c.PORTAL, c.SPAN_PORTAL_SUBMIT, 0, 10)
    tool = b.span(c.LANGCHAIN_API, c.SPAN_LANGCHAIN_TOOL_CALL, 1, 9, root)  # the tool call, not a run
    b.span(c.DYNAMIC_SESSIONS, c.SPAN_CODE_EXECUTE, 2, 2.25, tool, **{c.ATTR_CODE_EXECUTION_MS: 0})
    b.span(c.CODE_SESSION_API, c.SPAN_CODE_EXECUTE, 3, 3.5, tool, **{c.ATTR_CODE_EXECUTION_MS: 1})
    b.span(c.DYNAMIC_SESSIONS, c.SPAN_CODE_EXECUTE_BEFORE, 4, 4.125, tool)  # an earlier version's run
    assert execution_ms(b.trace()) == pytest.approx(0.875, abs=1e-9)
    without = TraceBuilder()
    without.span(c.PORTAL, c.SPAN_PORTAL_SUBMIT, 0, 10)
    assert execution_ms(without.trace()) is None


def test_the_recorded_chain_run_whose_runs_all_reported_0_ms(tmp_path: Path) -> None:
    traces = [t for t in FileSource(CHAIN_RUN).traces() if execution_ms(t) is not None]
    runs = [s for t in traces for s in t.spans if is_execution(s.service, s.name)]
    # both providers (the emulator, the custom container), each run under 1 whole ms by the data plane's count
    assert {s.service for s in runs} == {c.DYNAMIC_SESSIONS, c.CODE_SESSION_API}
    assert {s.attributes[c.ATTR_CODE_EXECUTION_MS] for s in runs} == {0}
    side = Side("traced", Chain(tmp_path / "chain"), e2e_ms=[(t.root.end_ns - t.root.start_ns) / 1e6 for t in traces],
                trace_ids=[t.trace_id for t in traces], seen_ns=[t.root.end_ns for t in traces])
    figures = analyse_traces(side, CHAIN_RUN)
    assert figures["traces_analysed"] == len(traces)
    expected = sorted(s.duration_ns / 1e6 for s in runs)
    assert figures["execution"]["p50_ms"] == round(expected[len(expected) // 2], 2) > 0
    assert figures["execution"]["min_ms"] == round(expected[0], 2) > 0


def _bench_args() -> argparse.Namespace:
    return argparse.Namespace(runs=3, concurrency=2, seconds=1.0, rounds=1)


def test_the_bench_reports_the_span_time_of_print1_not_the_rounded_0(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    runs_ms = (0.8, 0.6, 1.2)
    builders = [sub_millisecond_run(ms) for ms in runs_ms]
    spans = [s for b in builders for s in b.spans] + poll_trace(builders[0], 200).spans
    path = write_jsonl(tmp_path / "traces.jsonl", spans)
    traced = Side("traced", Chain(tmp_path / "traced"), e2e_ms=[480.0 + ms for ms in runs_ms],
                  trace_ids=[b.trace_id for b in builders], seen_ns=[b.spans[0].end_ns for b in builders],
                  rates=[10.0], completions=3)
    untraced = Side("untraced", Chain(tmp_path / "untraced"), e2e_ms=[470.0, 471.0, 472.0], rates=[11.0],
                    completions=3)
    traces = analyse_traces(traced, path)
    assert traces["traces_analysed"] == 3
    assert traces["execution"] == {"p50_ms": 0.8, "p95_ms": 1.16, "min_ms": 0.6, "n": 3}
    assert traces["overhead"]["p50_ms"] == 480.0  # end to end less the run, each completion's own

    figures = report(traced, untraced, traces, {}, _bench_args(), host_speed.reading(9.5, 9.75))
    assert (figures["execution_p50_ms"], figures["execution_p95_ms"]) == (0.8, 1.16)
    print_text(figures)
    out = capsys.readouterr().out.splitlines()
    (line,) = [row for row in out if "code execution" in row]
    assert "median     0.80 ms" in line and "p95     1.16 ms" in line and c.SPAN_CODE_EXECUTE in line
    assert out[1].startswith("host: bare interpreter start 9.50 ms CPU before the load, 9.75 after; "
                             f"CPython {platform.python_version()} at ")


def test_what_the_runs_used_of_their_sessions_is_summed_from_the_execution_spans() -> None:
    usage = [  # (run ms, CPU s, throttled periods, processes killed at the memory limit)
        (10.0, 0.002, 0, 0), (20.0, 0.004, 0, 0), (40.0, 0.030, 3, 0), (30.0, 0.010, 0, 2),
    ]
    analysis = LatencyAnalysis()
    for run_ms, cpu_s, throttled, kills in usage:
        b = chain_trace(execution_ms=run_ms)
        (run,) = [s for s in b.spans if s.name == c.SPAN_CODE_EXECUTE]
        run.attributes |= {c.ATTR_CODE_CPU_TIME: cpu_s, c.ATTR_CODE_CPU_THROTTLED: throttled,
                           c.ATTR_CODE_OOM_KILLS: kills}
        analysis.add(b.trace())
    without = chain_trace(execution_ms=50.0)  # a provider without cgroups: no usage attributes, not counted
    analysis.add(without.trace())
    summary = analysis.to_dict()["code_sessions"]
    assert summary == {
        "executions": 4, "cpu_p50_ms": 7.0, "cpu_p95_ms": 27.0, "cpu_p99_ms": 29.4,
        "cpu_of_wall": 0.46,  # 46 ms of CPU in 100 ms of runs
        "throttled_executions": 1, "oom_kills": 2, "executions_with_oom_kills": 1,
    }
    out = io.StringIO()
    render_latency(analysis, out)
    (line,) = [row for row in out.getvalue().splitlines() if row.startswith("code sessions")]
    assert "4 executions" in line and "CPU p50 7.000 ms" in line and "46% of their wall time" in line
    assert "held back by the CPU quota: 1" in line and "memory limit: 2 (in 1 executions)" in line
    assert "What the 4 executions used of their sessions' cgroups: CPU p50 <b>7.000 ms</b>" in render_report(analysis)
    unmeasured = LatencyAnalysis().add_all([without.trace()])
    assert "code_sessions" not in unmeasured.to_dict()
    assert "No execution carried its session's cgroup usage" in render_report(unmeasured)
