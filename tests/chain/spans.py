"""Checks on the shape of a received trace, shared by the chain tests."""

from __future__ import annotations

from tests.otlp_receiver import ReceivedSpan

SERVER, CLIENT = 2, 3
ERROR = 2


def named(spans: list[ReceivedSpan], name: str, service: str | None = None) -> list[ReceivedSpan]:
    return [span for span in spans if span.name == name and (service is None or span.service == service)]


def one(spans: list[ReceivedSpan], name: str, service: str | None = None) -> ReceivedSpan:
    found = named(spans, name, service)
    assert len(found) == 1, f"expected one {service or ''} {name!r}, found {len(found)}"
    return found[0]


def assert_one_connected_tree(spans: list[ReceivedSpan], root_parent: str = "") -> ReceivedSpan:
    """Every span's parent is in the trace; exactly one root (whose parent is ``root_parent``)."""
    ids = {span.span_id for span in spans}
    roots = [span for span in spans if span.parent_span_id == root_parent]
    assert len(roots) == 1, f"expected one root, found {[(s.service, s.name) for s in roots]}"
    orphans = [(s.service, s.name) for s in spans if s is not roots[0] and s.parent_span_id not in ids]
    assert not orphans, f"spans whose parent is not in the trace: {orphans}"
    return roots[0]


def ancestors(span: ReceivedSpan, spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    by_id = {s.span_id: s for s in spans}
    chain = []
    while span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        chain.append(span)
    return chain
