"""Speed and memory of the trace reader and latency analysis on a generated 150,000-span input.

Writes 10,000 chain-shaped traces of 15 spans with the attributes real spans carry (portal -> core
-> orchestration -> context -> langchain (background) -> dynamic sessions -> execution, the
portal's wait) to a temporary traces.jsonl the way the services do: traces overlap in time (one
submission every 100 ms on average), and each service appends its ended spans in a batch every
200 ms, so every trace is spread over many lines. Then, each in a fresh process so the peak
memory is its own, it measures:

1. ``callstack latency`` over the file: streaming (traces handed out as they settle), and with the
   whole file grouped at once, for comparison;
2. ``callstack trace ID`` (one trace picked out of the file).

    .venv/bin/python benchmarks/latency_bench.py [--traces 10000] [--keep FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from telemetry import conventions as c
from telemetry.analysis.traces import Span, to_otlp

MS = 1_000_000
ROUTE = c.ROUTE_ASYNC_COMPLETIONS


def chain(rng: random.Random, trace_no: int, t0: int) -> list[Span]:
    """One completion: 15 spans with random (log-normal) hop latencies, background work past the 202."""
    trace_id = f"{rng.getrandbits(128):032x}"
    spans: list[Span] = []

    def add(service: str, name: str, start: float, end: float, parent: Span | None, kind: str = "INTERNAL",
            **attributes: object) -> Span:
        common = {c.ATTR_INSTANCE_ID: "00000000-0000-0000-0000-000000000001", c.ATTR_OPERATION_ID: f"op-{trace_no}"}
        if kind == "SERVER":  # what the FastAPI instrumentation records (stable HTTP conventions)
            method, _, route = name.partition(" ")
            common |= {"http.request.method": method, "http.route": route, "url.path": route, "url.scheme": "http",
                       "server.address": "127.0.0.1", "server.port": 8000, "network.protocol.version": "1.1",
                       "user_agent.original": "python-httpx/0.28.1", "client.address": "127.0.0.1",
                       "client.port": 50000 + trace_no % 10000, "http.response.status_code": 200}
        span = Span(trace_id, f"{trace_no * 16 + len(spans) + 1:016x}", parent.span_id if parent else "", name, service,
                    kind, t0 + int(start * MS), t0 + int(end * MS), attributes=common | attributes,
                    resource={"service.name": service, "service.namespace": c.SERVICE_NAMESPACE,
                              "service.version": "0.1.0", "service.instance.id": f"host-{service}",
                              "deployment.environment.name": "local", "telemetry.sdk.language": "python",
                              "telemetry.sdk.name": "opentelemetry", "telemetry.sdk.version": "1.45.1"})
        spans.append(span)
        return span

    def hop(mean_ms: float) -> float:
        return rng.lognormvariate(0, 0.5) * mean_ms

    build, session, chat = hop(8), hop(15), hop(60)
    queue, execution = hop(30), hop(400)
    submit_end = 2 + hop(3) + build + session + hop(8)
    root_end = submit_end + 60 + chat + queue + execution + hop(40) + hop(200)
    root = add(c.PORTAL, c.SPAN_PORTAL_SUBMIT, 0, root_end, None)
    post = add(c.PORTAL, "POST", 1, submit_end, root, "CLIENT", **{"http.request.method": "POST"})
    core = add(c.CORE_API, f"POST {ROUTE}", 2, submit_end - 1, post, "SERVER", **{"http.route": ROUTE})
    orch = add(c.ORCHESTRATION_API, f"POST {ROUTE}", 3, submit_end - 2, core, "SERVER", **{"http.route": ROUTE})
    b = add(c.ORCHESTRATION_API, c.SPAN_ORCHESTRATION_BUILD, 4, 4 + build + session, orch)
    add(c.CONTEXT_API, f"POST {c.ROUTE_CODE_SESSIONS}", 5, 5 + session, b, "SERVER")
    lang_start = 5 + build + session
    lang = add(c.LANGCHAIN_API, f"POST {ROUTE}", lang_start, submit_end - 3, orch, "SERVER",
               **{"http.response.status_code": 202})
    t = lang_start + 1
    flow_end = t + chat + queue + execution + 30
    flow = add(c.LANGCHAIN_API, c.SPAN_LANGCHAIN_WORKFLOW, t, flow_end, lang)
    add(c.LANGCHAIN_API, "chat local-deterministic", t + 1, t + 1 + chat, flow, "CLIENT")
    tool_start = t + 2 + chat
    tool = add(c.LANGCHAIN_API, c.SPAN_LANGCHAIN_TOOL_CALL, tool_start, tool_start + queue + execution + 10, flow)
    ctx = add(c.CONTEXT_API, f"POST {c.ROUTE_EXECUTE_CODE}", tool_start + 1, tool_start + queue + execution + 8, tool,
              "SERVER")
    provider = add(c.DYNAMIC_SESSIONS, "POST /executions", tool_start + 2, tool_start + queue + execution + 6, ctx,
                   "SERVER")
    exec_start = tool_start + queue
    add(c.DYNAMIC_SESSIONS, c.SPAN_CODE_EXECUTE, exec_start, exec_start + execution, provider,
        error=False, **{c.ATTR_CODE_EXECUTION_MS: int(execution * 0.95)})
    add(c.LANGCHAIN_API, c.SPAN_LANGCHAIN_WRITE_RESULT, flow_end - 25, flow_end - 2, flow)
    add(c.PORTAL, c.SPAN_PORTAL_WAIT, submit_end, root_end - 0.5, root)
    return spans


def generate(path: Path, traces: int, seed: int = 7) -> int:
    rng = random.Random(seed)
    t0 = 1_790_000_000 * 10**9
    spans: list[Span] = []
    for n in range(traces):
        t0 += int(rng.expovariate(1 / 100) * MS)  # one submission every 100 ms on average
        spans.extend(chain(rng, n, t0))
    spans.sort(key=lambda s: s.end_ns)
    with path.open("w") as handle:  # a batch per service per 200 ms of end time
        batch: dict[str, list[Span]] = {}
        window = spans[0].end_ns // (200 * MS)
        for span in spans:
            if span.end_ns // (200 * MS) != window:
                for group in batch.values():
                    handle.write(json.dumps(to_otlp(group), separators=(",", ":")) + "\n")
                batch, window = {}, span.end_ns // (200 * MS)
            batch.setdefault(span.service, []).append(span)
        for group in batch.values():
            handle.write(json.dumps(to_otlp(group), separators=(",", ":")) + "\n")
    return len(spans)


def measure(mode: str, path: str, trace_id: str) -> None:
    """Runs in a child process: one measurement, printed as JSON."""
    from telemetry.analysis.latency import LatencyAnalysis
    from telemetry.analysis.trace_sources import FileSource

    started, cpu_started = time.perf_counter(), time.process_time()
    if mode == "trace":
        found = FileSource(Path(path)).trace(trace_id)
        spans = len(found.spans) if found else 0
        traces = 1
    else:
        source = FileSource(Path(path), settle_ns=None if mode == "whole" else 300 * 10**9)
        analysis = LatencyAnalysis().add_all(source.traces())
        analysis.to_dict()
        spans, traces = analysis.spans, analysis.traces
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and exec from the (big) parent
    status = Path("/proc/self/status").read_text()
    peak_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
    print(json.dumps({"seconds": seconds, "cpu": cpu, "spans": spans, "traces": traces, "peak_mib": peak_kib / 1024}))


def run_child(mode: str, path: Path, trace_id: str = "") -> dict[str, float]:
    output = subprocess.run([sys.executable, __file__, "--child", mode, str(path), trace_id], check=True,
                            capture_output=True, text=True).stdout
    return json.loads(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, help="write the generated file here and keep it")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "traces.jsonl"
        started = time.perf_counter()
        total = generate(path, args.traces)
        lines = sum(1 for _ in path.open())
        print(f"generated {args.traces:,} traces / {total:,} spans in {lines:,} lines, "
              f"{path.stat().st_size / 2**20:,.1f} MiB, in {time.perf_counter() - started:.1f} s")
        baseline = run_child("baseline", Path("/dev/null"))
        print(f"interpreter + imports alone:  peak RSS {baseline['peak_mib']:.1f} MiB; wall times depend on "
              f"the machine's load, CPU times less so")
        for mode, label in (("stream", "latency, streaming"), ("whole", "latency, whole file grouped")):
            result = run_child(mode, path)
            assert result["spans"] == total and result["traces"] == args.traces, result
            wall, cpu = result["spans"] / result["seconds"], result["spans"] / result["cpu"]
            print(f"{label:<28} {result['seconds']:6.2f} s wall, {result['cpu']:6.2f} s CPU  "
                  f"{wall:>9,.0f} spans/s wall  {cpu:>9,.0f} spans/s CPU  peak RSS {result['peak_mib']:.1f} MiB")
        with path.open() as handle:
            trace_id = json.loads(handle.readline())["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"]
        result = run_child("trace", path, trace_id)
        print(f"{'trace ID (one of the file)':<28} {result['seconds']:6.2f} s wall, {result['cpu']:6.2f} s CPU  "
              f"{result['spans']} spans found  peak RSS {result['peak_mib']:.1f} MiB")


if __name__ == "__main__":
    main()
