"""The benchmarks' OTLP/HTTP receiver, and its spans read back afterwards as OTLP/JSON lines.

The receiver takes every export (keep-alive, as a collector) and answers an empty Export*ServiceResponse
(b"" in protobuf). It does not decode while the chain runs: a Python decoder on the same cores would be
charged to tracing. Given a spool file, it appends each ``/v1/traces`` body (an ExportTraceServiceRequest,
gunzipped if the exporter compressed it) to it, led by its length (4 bytes, big-endian); metrics and logs
are taken and dropped. After the run :func:`spool_to_jsonl` decodes the spool with opentelemetry-proto into
the lines the embedded exporter writes to traces.jsonl (hex ids, camelCase names, integer enums), which
``telemetry.analysis`` reads.

    python -m benchmarks.otlp_sink [SPOOL]   # prints its endpoint, serves until stdin closes
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO

REPO = Path(__file__).resolve().parents[1]
LENGTH = struct.Struct(">I")
TRACES_PATH = "/v1/traces"


class Spool:
    """Length-prefixed bodies appended to one file, from any number of handler threads."""

    def __init__(self, path: Path) -> None:
        self._file: BinaryIO | None = path.open("ab")
        self._lock = threading.Lock()

    def append(self, body: bytes) -> None:
        with self._lock:
            if self._file is not None:  # a late export after close is dropped, as a stopped collector would
                self._file.write(LENGTH.pack(len(body)) + body)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def handler(spool: Spool | None) -> type[BaseHTTPRequestHandler]:
    class Sink(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if spool is not None and self.path.split("?", 1)[0].endswith(TRACES_PATH):
                if self.headers.get("Content-Encoding", "").lower() == "gzip":
                    body = gzip.decompress(body)
                spool.append(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return Sink


def serve(spool_path: Path | None) -> None:
    spool = Spool(spool_path) if spool_path is not None else None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(spool))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    sys.stdin.read()
    server.shutdown()
    if spool is not None:
        spool.close()


@contextlib.contextmanager
def otlp_receiver(spool: Path | None = None) -> Iterator[str]:
    """The receiver in its own process; yields its endpoint. The spool is complete once this exits."""
    command = [sys.executable, "-m", "benchmarks.otlp_sink", *([str(spool)] if spool is not None else [])]
    process = subprocess.Popen(command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert process.stdout is not None
        endpoint = process.stdout.readline().strip()
        if not endpoint:
            raise RuntimeError(f"the OTLP receiver did not start (exit status {process.wait(10)})")
        yield endpoint
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(10)


def spooled_requests(path: Path) -> Iterator[bytes]:
    """The bodies of a spool; a record cut short (a receiver killed mid-write) ends it."""
    with path.open("rb") as spool:
        while header := spool.read(LENGTH.size):
            if len(header) < LENGTH.size:
                return
            (size,) = LENGTH.unpack(header)
            body = spool.read(size)
            if len(body) < size:
                return
            yield body


def spool_to_jsonl(spool: Path, out: Path) -> int:
    """Decode every spooled ExportTraceServiceRequest into one OTLP/JSON line of ``out``; the spans written."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from telemetry.otlp_json import to_otlp_json

    spans = 0
    with out.open("w", encoding="utf-8") as lines:
        for number, body in enumerate(spooled_requests(spool) if spool.exists() else (), 1):
            try:
                request = ExportTraceServiceRequest.FromString(body)
            except DecodeError as error:
                raise ValueError(f"{spool}: export {number} is not an ExportTraceServiceRequest ({error})") from None
            document = to_otlp_json(request)
            if not document.get("resourceSpans"):
                continue
            spans += sum(len(scope.get("spans", ())) for resource in document["resourceSpans"]
                         for scope in resource.get("scopeSpans", ()))
            lines.write(json.dumps(document, separators=(",", ":"), ensure_ascii=False) + "\n")
    return spans


if __name__ == "__main__":
    serve(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
