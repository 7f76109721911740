"""What telemetry costs a service process, stage by stage (for ``benchmarks/tracing_cost.py``).

Each stage of the SDK's work is wrapped and its CPU time (``time.thread_time``: the calling thread's, so
an exporter's time is its own thread's) is added up: starting spans, ending them, setting attributes,
extracting and injecting the context, queueing ended spans, and each exporter's exports. Garbage
collector pauses are added up too (wall time: they stop the whole process). ``SIGUSR1`` starts a new
measurement; ``SIGUSR2`` writes ``<data dir>/telemetry-cost-<pid>.json``::

    {"service": ..., "process_cpu_s": ..., "stages": {"start_span": [calls, cpu_s], ...}}

``benchmarks/tracing_cost.py`` drives it: ``cost_hook/sitecustomize.py`` installs it in each service process
when ``FLLM_TELEMETRY_COST=on``. The wrappers cost time of their own.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_stages: dict[str, list[float]] = {}
_since = [0.0, 0.0]  # process CPU, reaped children's CPU (a code service's sandboxes)


def _measured(owner: Any, name: str, stage: str) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    def measured(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            entry = _stages.setdefault(stage, [0, 0.0])
            entry[0] += 1
            entry[1] += time.thread_time() - started

    setattr(owner, name, measured)


def _gc_pauses() -> None:
    started = [0.0]

    def pause(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        entry = _stages.setdefault(f"gc.generation{info['generation']}", [0, 0.0])
        entry[0] += 1
        entry[1] += time.perf_counter() - started[0]

    gc.callbacks.append(pause)


def install(service: str, data_dir: Path, exporter_classes: list[type[Any]]) -> None:
    """Wrap the SDK's stages and the exporters' ``export`` in this process; call once."""
    from opentelemetry import propagate
    from opentelemetry.sdk import trace as sdk
    from opentelemetry.sdk._shared_internal import BatchProcessor

    _measured(sdk.Tracer, "start_span", "start_span")
    _measured(sdk.Span, "end", "span.end")
    _measured(sdk.Span, "set_attribute", "span.set_attribute")
    _measured(sdk.Span, "set_attributes", "span.set_attributes")
    _measured(propagate, "extract", "context.extract")
    _measured(propagate, "inject", "context.inject")
    _measured(BatchProcessor, "emit", "batch.queue")
    for exporter_class in exporter_classes:
        _measured(exporter_class, "export", f"export.{exporter_class.__name__}")
    _gc_pauses()

    def children_cpu() -> float:
        times = os.times()
        return times.children_user + times.children_system

    def restart(*_: Any) -> None:
        _stages.clear()
        _since[0], _since[1] = time.process_time(), children_cpu()

    def write(*_: Any) -> None:
        report = {"service": service, "process_cpu_s": time.process_time() - _since[0],
                  "children_cpu_s": children_cpu() - _since[1], "stages": _stages}
        (data_dir / f"telemetry-cost-{os.getpid()}.json").write_text(json.dumps(report))

    signal.signal(signal.SIGUSR1, restart)
    signal.signal(signal.SIGUSR2, write)
    restart()
