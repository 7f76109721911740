"""Reading traces and analysing latency, outside the services: trace sources (OTLP JSON lines, Jaeger),
the phases of a completion, critical paths, waterfalls, HTML reports and the ``callstack trace`` /
``callstack latency`` commands. Nothing here is imported by a running service (that part is ``telemetry``)."""
