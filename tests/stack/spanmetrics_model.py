"""What Prometheus gets from our collector config: the series the span_metrics connector + the prometheus
exporter make of a list of spans, and the series the services' own instruments become.

A model of the collector (contrib 0.15x) for checking dashboards and alert rules without running it:
- span_metrics: ``{namespace}.calls`` (monotonic sum) and ``{namespace}.duration`` (histogram, unit
  ``histogram.unit``) per span, with the labels service.name, span.name, span.kind, status.code and the
  configured dimensions (span attribute, else resource attribute, else the dimension's default, else
  the label is left out);
- prometheus exporter, translation_strategy UnderscoreEscapingWithSuffixes: non [a-zA-Z0-9_:] -> ``_``,
  the unit as a suffix (ms -> milliseconds, s -> seconds; ``{annotations}`` dropped), ``_total`` on
  counters, ``_bucket`` (+ ``le``), ``_sum`` and ``_count`` on histograms; ``job`` and ``instance``
  from service.namespace/service.name and service.instance.id.
A label value is a set of possible values or ANY: a span's status (and HTTP status code) can be
anything at run time, so a query for errors must match a span that succeeded in the recording.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from telemetry import conventions as c

ANY = None  # a label value that can be anything
Values = frozenset[str] | None

SPAN_KINDS = ("SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER", "SPAN_KIND_CLIENT",
              "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER")
STATUS_CODES = frozenset({"STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"})
# Span attributes whose value is an outcome: any value may come at run time.
OUTCOME_ATTRIBUTES = {"http.response.status_code", c.ATTR_CODE_STATUS, "error.type"}
# Processors that pass data through unchanged (the model cannot follow any other).
PASS_THROUGH_PROCESSORS = {"memory_limiter", "batch", "tail_sampling"}
_UNIT_WORDS = {"ms": "milliseconds", "s": "seconds", "By": "bytes", "min": "minutes", "h": "hours"}
_ENV = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: str  # SPAN_KIND_*
    status: str = "STATUS_CODE_UNSET"
    attributes: Mapping[str, Any] = field(default_factory=dict)
    resource: Mapping[str, Any] = field(default_factory=dict)
    span_id: str = ""
    parent_id: str = ""


@dataclass(frozen=True)
class Instrument:
    """One of the services' own OTel instruments."""

    name: str
    kind: str  # counter | histogram
    unit: str
    attributes: Mapping[str, Values]
    optional: frozenset[str] = frozenset()  # attributes only some data points carry


@dataclass
class Series:
    name: str
    labels: dict[str, Values]


# --- collector config ---

def resolve_env(node: Any, env: Mapping[str, str] | None = None) -> Any:
    """``${env:VAR:-default}`` as the collector expands it (the default when VAR is unset)."""
    env = os.environ if env is None else env
    if isinstance(node, dict):
        return {k: resolve_env(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve_env(v, env) for v in node]
    if isinstance(node, str):
        return _ENV.sub(lambda m: env.get(m.group(1), m.group(2) or ""), node)
    return node


def component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def _pipeline_kind(pipeline_id: str) -> str:
    return component_type(pipeline_id)


def prometheus_exporters_fed_by(config: Mapping[str, Any], receiver_id: str, signal: str = "metrics") -> list[str]:
    """Prometheus exporters reached from ``receiver_id`` through a ``signal`` pipeline of pass-through steps."""
    found = []
    for pipeline_id, pipeline in config["service"]["pipelines"].items():
        if _pipeline_kind(pipeline_id) != signal or receiver_id not in pipeline.get("receivers", []):
            continue
        unknown = {component_type(p) for p in pipeline.get("processors", [])} - PASS_THROUGH_PROCESSORS
        if unknown:
            raise NotImplementedError(f"the model cannot follow processors {sorted(unknown)} in {pipeline_id}")
        found += [e for e in pipeline.get("exporters", []) if component_type(e) == "prometheus"]
    return found


def span_metrics_connectors_fed_by_otlp(config: Mapping[str, Any]) -> list[str]:
    """span_metrics connectors that get the spans the otlp receiver takes in, before any sampling."""
    found = []
    for pipeline_id, pipeline in config["service"]["pipelines"].items():
        if _pipeline_kind(pipeline_id) != "traces" or not any(
            component_type(r) == "otlp" for r in pipeline.get("receivers", [])
        ):
            continue
        if any(component_type(p) == "tail_sampling" for p in pipeline.get("processors", [])):
            continue  # metrics after sampling would undercount
        found += [e for e in pipeline.get("exporters", []) if component_type(e) == "span_metrics"]
    return found


# --- Prometheus naming ---

def prometheus_label(name: str) -> str:
    label = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return f"key_{label}" if label[0].isdigit() else label


def prometheus_names(otel_name: str, unit: str, kind: str, exporter: Mapping[str, Any]) -> list[str]:
    strategy = exporter.get("translation_strategy", "UnderscoreEscapingWithSuffixes")
    if strategy != "UnderscoreEscapingWithSuffixes":
        raise NotImplementedError(f"translation_strategy {strategy}")
    if exporter.get("namespace"):
        otel_name = f"{exporter['namespace']}.{otel_name}"
    tokens = [t for t in re.split(r"[^A-Za-z0-9_:]+", otel_name) if t]
    unit = re.sub(r"\{[^}]*\}", "", unit).strip()
    if unit:
        word = "_per_".join(_UNIT_WORDS.get(part, part) for part in unit.split("/"))
        if word not in tokens:
            tokens.append(word)
    base = "_".join(tokens)
    if kind == "counter":
        return [base if base.endswith("_total") else f"{base}_total"]
    if kind == "histogram":
        return [f"{base}_bucket", f"{base}_sum", f"{base}_count"]
    return [base]


def _resource_labels(resource: Mapping[str, Any], exporter: Mapping[str, Any]) -> dict[str, Values]:
    labels: dict[str, Values] = {}
    service = resource.get("service.name")
    if service:
        namespace = resource.get("service.namespace")
        labels["job"] = frozenset({f"{namespace}/{service}" if namespace else str(service)})
    if resource.get("service.instance.id"):
        labels["instance"] = ANY  # one per process
    if (exporter.get("resource_to_telemetry_conversion") or {}).get("enabled"):
        labels |= {prometheus_label(k): frozenset({str(v)}) for k, v in resource.items()}
    labels |= {prometheus_label(k): frozenset({str(v)}) for k, v in (exporter.get("const_labels") or {}).items()}
    return labels


def _emit(
    out: list[Series], otel_name: str, unit: str, kind: str, labels: dict[str, Values], exporter: Mapping[str, Any]
) -> None:
    for name in prometheus_names(otel_name, unit, kind, exporter):
        series_labels = dict(labels)
        if name.endswith("_bucket"):
            series_labels["le"] = ANY
        out.append(Series(name, series_labels))


# --- span metrics ---

def _dimension_value(dim: Mapping[str, Any], span: Span) -> Values | bool:
    """The label value(s) of one configured dimension, or False when the label is left out."""
    name = dim["name"]
    for attrs in (span.attributes, span.resource):
        if name in attrs:
            return ANY if name in OUTCOME_ATTRIBUTES else frozenset({str(attrs[name])})
    if "default" in dim and dim["default"] is not None:
        return frozenset({str(dim["default"])})
    return False


def span_metric_series(config: Mapping[str, Any], spans: Iterable[Span]) -> list[Series]:
    """Series Prometheus scrapes from the collector for these spans (calls and duration per span)."""
    config = resolve_env(config)
    out: list[Series] = []
    spans = list(spans)
    for connector_id in span_metrics_connectors_fed_by_otlp(config):
        settings = config["connectors"].get(connector_id) or {}
        namespace = settings.get("namespace", "traces.span.metrics")
        histogram = settings.get("histogram") or {}
        unit = histogram.get("unit", "ms")
        excluded = set(settings.get("exclude_dimensions") or [])
        for exporter_id in prometheus_exporters_fed_by(config, connector_id):
            exporter = config["exporters"].get(exporter_id) or {}
            for span in spans:
                labels: dict[str, Values] = {}
                defaults = {
                    "service.name": frozenset({span.service}),
                    "span.name": frozenset({span.name}),
                    "span.kind": frozenset({span.kind}),
                    "status.code": STATUS_CODES,  # any span may end in error
                }
                for key, value in defaults.items():
                    if key not in excluded:
                        labels[prometheus_label(key)] = value
                for dim in settings.get("dimensions") or []:
                    value = _dimension_value(dim, span)
                    if value is not False:
                        labels[prometheus_label(dim["name"])] = value  # type: ignore[assignment]
                resource = {"service.name": span.service, **span.resource}
                base = _resource_labels(resource, exporter) | labels
                calls = dict(base)
                for dim in settings.get("calls_dimensions") or []:
                    if (value := _dimension_value(dim, span)) is not False:
                        calls[prometheus_label(dim["name"])] = value  # type: ignore[assignment]
                _emit(out, f"{namespace}.calls", "", "counter", calls, exporter)
                if not histogram.get("disable"):
                    duration = dict(base)
                    for dim in histogram.get("dimensions") or []:
                        if (value := _dimension_value(dim, span)) is not False:
                            duration[prometheus_label(dim["name"])] = value  # type: ignore[assignment]
                    _emit(out, f"{namespace}.duration", unit, "histogram", duration, exporter)
    return out


# --- the services' own instruments (telemetry/conventions.py) ---

PROVIDERS = frozenset({"AzureContainerAppsCodeInterpreter", "AzureContainerAppsCustomContainer"})
OPERATION_STATUSES = frozenset({"Completed", "Failed"})
SERVICE_INSTRUMENTS = (
    Instrument(
        c.METRIC_CODE_EXECUTION_DURATION, "histogram", "s",
        {c.METRIC_ATTR_PROVIDER: PROVIDERS, c.METRIC_ATTR_OUTCOME: frozenset({"Succeeded", "Failed", "TimedOut"})},
    ),
    Instrument(
        c.METRIC_CODE_SESSION_ACQUIRE, "counter", "{acquisition}",
        {c.METRIC_ATTR_ACQUIRE: frozenset({"warm", "cold", "existing"})},
    ),
    Instrument(c.METRIC_CODE_SESSION_OOM_KILLS, "counter", "{process}", {c.METRIC_ATTR_PROVIDER: PROVIDERS}),
    Instrument(c.METRIC_CODE_SESSION_THROTTLED, "counter", "{execution}", {c.METRIC_ATTR_PROVIDER: PROVIDERS}),
    Instrument(
        c.METRIC_OPERATION_DURATION, "histogram", "s",
        {c.METRIC_ATTR_AGENT: ANY, c.METRIC_ATTR_STATUS: OPERATION_STATUSES},
    ),
    Instrument(
        c.METRIC_OPERATIONS, "counter", "{operation}",
        {c.METRIC_ATTR_AGENT: ANY, c.METRIC_ATTR_STATUS: OPERATION_STATUSES, c.METRIC_ATTR_FAILED_HOP: ANY},
        optional=frozenset({c.METRIC_ATTR_FAILED_HOP}),
    ),
)


def service_metric_series(
    config: Mapping[str, Any], instruments: Iterable[Instrument] = SERVICE_INSTRUMENTS
) -> list[Series]:
    """Series of the services' own metrics, sent by OTLP and exposed by the prometheus exporter."""
    config = resolve_env(config)
    out: list[Series] = []
    receivers = [r for r in config.get("receivers", {}) if component_type(r) == "otlp"]
    jobs = frozenset(f"{c.SERVICE_NAMESPACE}/{s}" for s in c.CHAIN_SERVICES)
    for receiver_id in receivers:
        for exporter_id in prometheus_exporters_fed_by(config, receiver_id):
            exporter = config["exporters"].get(exporter_id) or {}
            for inst in instruments:
                labels = {prometheus_label(k): v for k, v in inst.attributes.items()}
                labels |= {"job": jobs, "instance": ANY}
                _emit(out, inst.name, inst.unit, inst.kind, labels, exporter)
                if inst.optional:
                    without = {k: v for k, v in labels.items() if k not in {prometheus_label(o) for o in inst.optional}}
                    _emit(out, inst.name, inst.unit, inst.kind, without, exporter)
    return out


# --- matching queries against series ---

def _value_matches(values: Values, present: bool, op: str, wanted: str) -> bool:
    if present and values is ANY:
        return True
    candidates = values if present else frozenset({""})  # an absent label reads as ""
    assert candidates is not None
    if op == "=":
        return wanted in candidates
    if op == "!=":
        return any(v != wanted for v in candidates)
    pattern = re.compile(wanted)
    if op == "=~":
        return any(pattern.fullmatch(v) for v in candidates)
    return any(not pattern.fullmatch(v) for v in candidates)


def selector_matches(selector: Any, series: Iterable[Series], tolerate: Mapping[str, set[str]] | None = None) -> bool:
    """Whether some series satisfies every matcher of the selector (Grafana variables match anything).

    ``tolerate`` lists label values that may be missing from the data (hops a recording did not use).
    """
    tolerate = tolerate or {}
    for s in series:
        if selector.metric is not None and s.name != selector.metric:
            continue
        ok = True
        for m in selector.matchers:
            if m.label == "__name__":
                ok = re.fullmatch(m.value, s.name) is not None if m.op == "=~" else s.name == m.value
            elif m.templated or m.op == "=" and m.value in tolerate.get(m.label, set()) and m.label in s.labels:
                ok = True
            else:
                ok = _value_matches(s.labels.get(m.label), m.label in s.labels, m.op, m.value)
            if not ok:
                break
        if ok:
            return True
    return False


def label_names(series: Iterable[Series], metric: str) -> set[str]:
    return {label for s in series if s.name == metric for label in s.labels}
