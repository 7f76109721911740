"""``callstack trace`` and ``callstack latency``: read traces from a file or Jaeger and show where the time goes.

The CLI (``services.cli``) calls :func:`register` to add both subcommands; ``callstack demo`` calls
:func:`print_trace`. Exit codes: 0 done, 1 nothing found, 2 unreadable source or bad input.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from services.common.settings import TelemetrySwitches
from telemetry import conventions as c
from telemetry.analysis.jaeger_json import to_jaeger_document
from telemetry.analysis.latency import LatencyAnalysis
from telemetry.analysis.trace_sources import open_source
from telemetry.analysis.traces import Trace, TraceSourceError, normalize_id
from telemetry.analysis.waterfall import render, render_latency

_UNITS_NS = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str) -> int:
    """``90s``, ``15m``, ``1h30m``, ``2d``, ``500ms`` as nanoseconds."""
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 30s, 15m, 1h30m, 2d)")
    return int(sum(float(n) * _UNITS_NS[u] for n, u in parts))


def _trace_id(text: str) -> str:
    try:
        trace_id = normalize_id(text.strip(), 16)
    except TraceSourceError:
        trace_id = ""
    if not trace_id:
        raise argparse.ArgumentTypeError(f"not a trace id: {text!r} (32 hex digits)")
    return trace_id


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return value


def default_source(data_dir: str | None) -> str:
    return str((Path(data_dir) if data_dir else TelemetrySwitches().data_dir) / "traces.jsonl")


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", metavar="FILE|URL",
                        help="trace file (OTLP/JSON lines or document, Jaeger JSON) or Jaeger query URL "
                             "(e.g. http://127.0.0.1:16686, searched over the last hour unless --since); "
                             "default <data dir>/traces.jsonl")
    parser.add_argument("--data-dir", help="data directory (default $FLLM_DATA_DIR or .callstack)")
    parser.add_argument("--service", default=c.PORTAL,
                        help=f"service to search by at a Jaeger URL (default {c.PORTAL}; its earlier name too)")
    parser.add_argument("--limit", type=_positive, default=1000, help="most traces to fetch from a Jaeger URL")


def register(subparsers: argparse._SubParsersAction) -> None:
    trace = subparsers.add_parser("trace", help="show one trace as a waterfall with its critical path")
    trace.add_argument("trace_id", type=_trace_id, metavar="TRACE_ID")
    _add_source_options(trace)
    trace.add_argument("--export-jaeger", metavar="OUT.json", help="also write the trace as Jaeger JSON (UI upload)")
    trace.add_argument("--width", type=_positive, default=32, help="timeline width in characters")
    trace.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                       help="wait up to this long for the trace's spans to arrive")
    trace.set_defaults(func=run_trace)

    latency = subparsers.add_parser("latency", help="latency per hop and per phase over many traces")
    _add_source_options(latency)
    latency.add_argument("--since", type=parse_duration, metavar="DURATION",
                         help="only traces that started within this long (30s, 15m, 1h, 2d)")
    latency.add_argument("--json", action="store_true", help="print the analysis as JSON")
    latency.add_argument("--report", metavar="FILE.html", help="write a self-contained HTML report")
    latency.set_defaults(func=run_latency)


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def wait_for_trace(trace_id: str, source: str, timeout_s: float, settle_s: float = 0.5) -> Trace | None:
    """The trace once it has a root and no new spans for ``settle_s`` (services flush every 200 ms)."""
    reader = open_source(source)
    deadline = time.monotonic() + timeout_s
    trace, count, stable_since = None, -1, time.monotonic()
    while True:
        try:
            trace = reader.trace(trace_id)
        except TraceSourceError:
            if time.monotonic() >= deadline:
                raise
            trace = None  # the file may not exist yet
        now = time.monotonic()
        seen = len(trace.spans) if trace else 0
        if seen != count:
            count, stable_since = seen, now
        complete = trace is not None and not trace.root.parent_id and now - stable_since >= settle_s
        if complete or now >= deadline:
            return trace
        time.sleep(0.1)


def print_trace(trace_id: str, source: str, out: TextIO, *, wait_s: float = 3.0, width: int = 32) -> int:
    """Print a trace as an indented waterfall, waiting up to ``wait_s`` for spans still being flushed."""
    try:
        trace = wait_for_trace(_trace_id(trace_id), source, wait_s)
    except (TraceSourceError, argparse.ArgumentTypeError) as error:
        return _fail(str(error))
    if trace is None:
        return _fail(f"trace {trace_id} not found in {source}", 1)
    render(trace, out, width=width, color=out.isatty())
    return 0


def _closed_pipe_ok(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Output piped into ``head`` and the like: stop quietly when the reader has gone."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            return 0

    return run


@_closed_pipe_ok
def run_trace(args: argparse.Namespace) -> int:
    source = args.source or default_source(args.data_dir)
    code = print_trace(args.trace_id, source, sys.stdout, wait_s=args.wait, width=args.width)
    if code == 0 and args.export_jaeger:
        trace = open_source(source, service=args.service, limit=args.limit).trace(args.trace_id)
        if trace is None:
            return _fail(f"trace {args.trace_id} vanished from {source}", 1)
        try:
            Path(args.export_jaeger).write_text(json.dumps(to_jaeger_document([trace]), indent=1))
        except OSError as error:
            return _fail(f"cannot write {args.export_jaeger}: {error.strerror}")
        print(f"wrote {args.export_jaeger} (Jaeger UI: Search → Upload)", file=sys.stderr)
    return code


@_closed_pipe_ok
def run_latency(args: argparse.Namespace) -> int:
    source = args.source or default_source(args.data_dir)
    since_ns = time.time_ns() - args.since if args.since is not None else None
    try:
        reader = open_source(source, service=args.service, limit=args.limit)
        analysis = LatencyAnalysis().add_all(reader.traces(since_ns))
    except TraceSourceError as error:
        return _fail(str(error))
    if args.report:
        from telemetry.analysis.report import write_report

        try:
            write_report(analysis, Path(args.report), source=source)
        except OSError as error:
            return _fail(f"cannot write {args.report}: {error.strerror}")
        print(f"wrote {args.report}", file=sys.stderr)
    if args.json:
        json.dump(analysis.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        render_latency(analysis, sys.stdout)
    return 0 if analysis.traces else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="callstack")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
