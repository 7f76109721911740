"""Loaded at interpreter start by every service process of ``benchmarks/tracing_cost.py`` (this folder is put
on their PYTHONPATH): wraps the SDK's stages with the measuring wrappers of ``benchmarks/telemetry_cost.py``.
The services themselves carry no profiling code."""

from __future__ import annotations

import os
from pathlib import Path

if os.environ.get("FLLM_TELEMETRY_COST", "off").lower() in {"1", "on", "true", "yes"}:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from benchmarks.telemetry_cost import install
    from telemetry.otlp_json import JsonLinesSpanExporter

    # sys.argv is not set yet for ``-m``: the command line is read from /proc.
    arguments = Path("/proc/self/cmdline").read_bytes().decode(errors="replace").split("\0")
    service = next((arg for arg in arguments if arg.startswith("services.")), "python")
    install(service.removeprefix("services.").replace("_", "-"), Path(os.environ.get("FLLM_DATA_DIR", ".callstack")),
            [JsonLinesSpanExporter, OTLPSpanExporter])
