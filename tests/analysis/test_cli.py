"""`callstack trace` and `callstack latency` through the subcommands the CLI registers."""

from __future__ import annotations

import argparse
import io
import json
import re
import threading
import time
from pathlib import Path

import pytest

from telemetry import conventions as c
from telemetry.analysis.cli import parse_duration, print_trace, register
from telemetry.analysis.trace_sources import FileSource
from tests.analysis.builder import MS, chain_trace, poll_trace, write_jsonl


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="callstack")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    ops = [chain_trace(execution_ms=100 * i) for i in range(1, 5)]
    write_jsonl(tmp_path / "traces.jsonl", [s for b in ops + [poll_trace(ops[0], 300)] for s in b.spans])
    return tmp_path


def test_trace_prints_the_waterfall_with_self_time_errors_and_the_critical_path(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    b = chain_trace(exec_error=True)
    write_jsonl(tmp_path / "traces.jsonl", b.spans)
    monkeypatch.setenv("FLLM_DATA_DIR", str(tmp_path))
    code, out, _ = run(["trace", b.trace_id.upper(), "--width", "20"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"Trace {b.trace_id}  22 spans  8 services  1,000.000 ms  1 error"
    assert len(lines) == 2 + 22
    submit = next(line for line in lines if line.endswith(f"* {c.PORTAL}  {c.SPAN_PORTAL_SUBMIT}"))
    assert submit.split()[:4] == ["0.000", "1,000.000", "6.000", "6.000"]
    wait = next(line for line in lines if line.endswith(c.SPAN_PORTAL_WAIT))
    # the wait is critical only after the background workflow it waited for ended
    assert wait.split()[:4] == ["60.000", "935.000", "935.000", "95.000"] and "░" * 17 + "██" in wait
    execute = next(line for line in lines if c.SPAN_CODE_EXECUTE in line)
    # on the critical path, indented six levels under the root, failed
    assert execute.split()[:4] == ["160.000", "520.000", "520.000", "520.000"] and execute.endswith(
        f"{'  ' * 6}* {c.DYNAMIC_SESSIONS}  {c.SPAN_CODE_EXECUTE}  ✗ boom")
    assert "█" in execute and "░" not in execute


def test_trace_exports_a_jaeger_file_that_reads_back(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace_id = next(FileSource(data_dir / "traces.jsonl").traces()).trace_id
    out_file = data_dir / "out.json"
    code, _, err = run(["trace", trace_id, "--data-dir", str(data_dir), "--export-jaeger", str(out_file)], capsys)
    assert code == 0 and "wrote" in err
    document = json.loads(out_file.read_text())
    assert [len(t["spans"]) for t in document["data"]] == [22]
    (again,) = FileSource(out_file).traces()
    assert again.trace_id == trace_id


def test_trace_not_found_and_bad_ids(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["trace", "ab" * 16, "--source", str(data_dir / "traces.jsonl")], capsys)
    assert code == 1 and f"trace {'ab' * 16} not found" in err
    with pytest.raises(SystemExit):
        run(["trace", "not-a-trace-id"], capsys)
    assert "not a trace id" in capsys.readouterr().err
    code, _, err = run(["trace", "ab" * 16, "--source", str(data_dir / "missing.jsonl")], capsys)
    assert code == 2 and "no trace file at" in err


def test_latency_json_has_the_documented_shape(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["latency", "--data-dir", str(data_dir), "--json"], capsys)
    assert code == 0
    result = json.loads(out)
    assert (result["traces"], result["operations"], result["polls"]) == (5, 4, 1)
    assert set(result["hops"][0]) == {"service", "span", "count", "errors", "p50_ms", "p95_ms", "p99_ms",
                                      "self_p50_ms", "self_p95_ms", "critical_path_share"}
    execution = next(p for p in result["phases"] if p["phase"] == "execution")
    assert (execution["count"], execution["p50_ms"], execution["p95_ms"]) == (4, 250.0, 385.0)
    assert result["end_to_end"]["p50_ms"] == 725.0


def test_latency_tables_and_since(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["latency", "--source", str(data_dir / "traces.jsonl")], capsys)
    assert code == 0 and out.startswith("5 traces (4 operations, 1 status polls), 91 spans")
    assert re.search(r"^execution\s+4\s+250\.000\s+385\.000", out, re.M)
    assert re.search(rf"^{c.DYNAMIC_SESSIONS}  {re.escape(c.SPAN_CODE_EXECUTE)}\s+4\s+0\s+250\.000", out, re.M)
    # the fixtures are from 2026-09: none started within the last hour
    code, out, _ = run(["latency", "--source", str(data_dir / "traces.jsonl"), "--since", "1h"], capsys)
    assert code == 1 and out.startswith("0 traces")


def test_latency_report_is_one_self_contained_page(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = data_dir / "latency.html"
    code, _, err = run(["latency", "--data-dir", str(data_dir), "--report", str(report)], capsys)
    assert code == 0 and f"wrote {report}" in err
    page = report.read_text()
    assert page.startswith("<!doctype html>") and page.count("<svg") == 4
    assert not re.search(r"(src|href)=\S*(http|//)", page) and "<script" not in page
    assert "Phases of the end-to-end time" in page and "Code execution time" in page
    assert "interpreter-run span duration: n=4, p50 250.000 ms" in page
    assert "POST /instances/{instanceId}/codeSessions/{sessionId}/executeCode" in page


@pytest.mark.parametrize(("text", "ns"), [("30s", 30 * 10**9), ("15m", 900 * 10**9), ("1h30m", 5400 * 10**9),
                                           ("2d", 172800 * 10**9), ("500ms", 500 * MS), ("1.5h", 5400 * 10**9)])
def test_durations(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "5", "h", "5 minutes", "-5m", "1h junk"])
def test_bad_durations_are_rejected(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a duration"):
        parse_duration(text)


def test_print_trace_waits_for_spans_still_being_flushed(tmp_path: Path) -> None:
    b = chain_trace()
    path = tmp_path / "traces.jsonl"
    ordered = sorted(b.spans, key=lambda s: s.end_ns)
    write_jsonl(path, ordered[:5])

    def flush_the_rest() -> None:  # the other services' batches, 200 ms apart, the root last
        for i in range(5, len(ordered), 6):
            time.sleep(0.2)
            write_jsonl(path, ordered[i:i + 6], batch=6)

    writer = threading.Thread(target=flush_the_rest)
    writer.start()
    out = io.StringIO()
    started = time.monotonic()
    code = print_trace(b.trace_id, str(path), out)
    writer.join()
    assert code == 0 and out.getvalue().startswith(f"Trace {b.trace_id}  22 spans")
    assert 0.8 <= time.monotonic() - started < 3.5


def test_print_trace_gives_up_after_the_wait(tmp_path: Path) -> None:
    out = io.StringIO()
    started = time.monotonic()
    assert print_trace("cd" * 16, str(tmp_path / "traces.jsonl"), out, wait_s=0.5) == 2  # never appeared
    assert 0.5 <= time.monotonic() - started < 1.5 and out.getvalue() == ""
