"""The portal web app in-process (httpx over ASGI) against the fake Core: page, JSON routes, spans."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common.settings import Settings
from services.portal import create_app
from services.portal.app import PortalConfig
from telemetry import conventions as c
from tests.portal.conftest import PROGRESS, FakeCore, answer_to, spans_named, trace_id_hex
from tests.wait import until

T = TypeVar("T")
JAEGER = "http://127.0.0.1:16686"


def with_portal(fake: FakeCore, work: Callable[[httpx.AsyncClient, FastAPI], Awaitable[T]], **config: Any) -> T:
    """Run ``work`` against a fresh portal app (no lifespan: telemetry stays as the tests set it up)."""

    async def run() -> T:
        app = create_app(Settings(urls={"core_api": fake.url}), PortalConfig(**{"jaeger_url": JAEGER, **config}))
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://portal") as http:
                return await work(http, app)
        finally:
            await app.state.waiters.stop()
            await app.state.portal_client.aclose()

    return asyncio.run(run())


def test_the_page_is_self_contained(fake_core: FakeCore, span_exporter: InMemorySpanExporter) -> None:
    async def work(http: httpx.AsyncClient, _: FastAPI) -> httpx.Response:
        return await http.get("/")

    page = with_portal(fake_core, work)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    nonce = policy.split("'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}">' in page.text and f'<style nonce="{nonce}">' in page.text
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    for element in ('id="prompt"', 'id="agent"', 'id="send"', 'id="answer"', 'id="trace-id"', 'id="jaeger-link"'):
        assert element in page.text
    assert '<option value="code-interpreter">' in page.text and '<option value="custom-container-coder">' in page.text
    assert "http://" not in page.text.replace(JAEGER, ""), "no external resources"


def test_invalid_input_is_a_400_naming_the_field(fake_core: FakeCore, span_exporter: InMemorySpanExporter) -> None:
    async def work(http: httpx.AsyncClient, _: FastAPI) -> list[httpx.Response]:
        return [
            await http.post("/api/completions", json={"prompt": ""}),
            await http.post("/api/completions", json={"prompt": "   \n"}),
            await http.post("/api/completions", json={"agent_name": "code-interpreter"}),
            await http.post("/api/completions", json={"prompt": "hi", "agent_name": "../../etc"}),
            await http.get("/api/completions/op-1?wait=-1"),
            await http.get("/api/completions/bad%20id"),
        ]

    responses = with_portal(fake_core, work)
    assert [r.status_code for r in responses] == [400] * 6
    fields = [[e["field"] for e in r.json()["errors"]] for r in responses]
    assert fields == [["prompt"], ["prompt"], ["prompt"], ["agent_name"], ["query.wait"], ["path.operation_id"]]
    assert not fake_core.submissions, "nothing invalid reaches Core"


def test_submit_then_status_until_completed(fake_core: FakeCore, span_exporter: InMemorySpanExporter) -> None:
    fake_core.reset(in_progress_polls=None, complete_after_s=0.5, honour_wait=True)
    span_exporter.clear()

    async def work(http: httpx.AsyncClient, app: FastAPI) -> tuple[httpx.Response, list[dict[str, Any]]]:
        ask = {"prompt": "print(1)", "agent_name": "custom-container-coder"}
        accepted = await http.post("/api/completions", json=ask)
        views = []
        while not views or not views[-1]["done"]:
            views.append((await http.get(f"/api/completions/{accepted.json()['operation_id']}?wait=10")).json())
            assert len(views) < 20
        # The background wait ends its span right after it publishes the end.
        await until(lambda: spans_named(span_exporter, c.SPAN_PORTAL_WAIT), "the portal's wait span")
        return accepted, views

    accepted, views = with_portal(fake_core, work)
    assert accepted.status_code == 202
    started = accepted.json()
    assert started["status"] == "InProgress" and not started["done"]
    assert started["jaeger_url"] == f"{JAEGER}/trace/{started['trace_id']}"
    final = views[-1]
    assert final["status"] == "Completed" and final["answer"] == answer_to("print(1)")
    assert final["trace_id"] == started["trace_id"] and final["operation_id"] == started["operation_id"]
    assert len(views) <= 2, "the page's long-poll is answered when the operation ends"
    assert len(fake_core.polls) <= 2, "the page's polls are answered from the portal's own wait"
    assert fake_core.submissions[0]["body"]["agent_name"] == "custom-container-coder"

    (submit,) = spans_named(span_exporter, c.SPAN_PORTAL_SUBMIT)
    (wait,) = spans_named(span_exporter, c.SPAN_PORTAL_WAIT)
    assert submit.parent is None and trace_id_hex(submit) == started["trace_id"]
    assert wait.parent is not None and wait.parent.span_id == submit.context.span_id
    assert wait.attributes[c.ATTR_OPERATION_STATUS] == "Completed"


def test_status_of_an_operation_the_portal_does_not_wait_on_asks_core(
    fake_core: FakeCore, span_exporter: InMemorySpanExporter
) -> None:
    fake_core.reset(in_progress_polls=0)

    async def work(http: httpx.AsyncClient, app: FastAPI) -> list[httpx.Response]:
        accepted = await http.post("/api/completions", json={"prompt": "elsewhere"})
        operation_id = accepted.json()["operation_id"]
        waiting = app.state.waiters._tracked[operation_id]
        await until(lambda: waiting.view.done, "the portal's wait to see the end")
        app.state.waiters._tracked.clear()  # ...and forgets it, as after a restart
        return [await http.get(f"/api/completions/{operation_id}"), await http.get("/api/completions/unknown-op")]

    known, unknown = with_portal(fake_core, work)
    assert known.status_code == 200 and known.json()["answer"] == answer_to("elsewhere")
    assert fake_core.polls[-2]["operation_id"] == known.json()["operation_id"]
    assert unknown.status_code == 404 and "unknown-op" in unknown.json()["detail"]


def test_core_failures_become_gateway_errors(fake_core: FakeCore, span_exporter: InMemorySpanExporter) -> None:
    async def work(http: httpx.AsyncClient, app: FastAPI) -> httpx.Response:
        app.state.portal_client.instance_id = "00000000-0000-0000-0000-00000000ffff"
        return await http.post("/api/completions", json={"prompt": "hi"})

    response = with_portal(fake_core, work)
    assert response.status_code == 502
    assert c.CORE_API in response.json()["detail"] and "Access denied" in response.json()["detail"]


def test_waits_are_bounded(fake_core: FakeCore, span_exporter: InMemorySpanExporter) -> None:
    fake_core.reset(in_progress_polls=None, complete_after_s=0.3, honour_wait=True)

    async def work(http: httpx.AsyncClient, app: FastAPI) -> list[dict[str, Any]]:
        first = (await http.post("/api/completions", json={"prompt": "one"})).json()
        second = (await http.post("/api/completions", json={"prompt": "two"})).json()
        assert app.state.waiters.in_flight == 1
        return [(await http.get(f"/api/completions/{op['operation_id']}?wait=5")).json() for op in (first, second)]

    first, second = with_portal(fake_core, work, max_in_flight=1)
    assert first["done"] and first["answer"] == answer_to("one")
    assert second["done"] and second["answer"] == answer_to("two"), "the second is answered by Core's long-poll"


def test_a_change_the_page_missed_is_answered_at_once(fake_core: FakeCore, span_exporter: InMemorySpanExporter) -> None:
    fake_core.reset(in_progress_polls=None, complete_after_s=2.0)  # ignores ?wait=: the portal polls adaptively

    async def work(http: httpx.AsyncClient, app: FastAPI) -> list[tuple[dict[str, Any], float]]:
        accepted = (await http.post("/api/completions", json={"prompt": "progress"})).json()
        url = f"/api/completions/{accepted['operation_id']}"
        waiting = app.state.waiters._tracked[accepted["operation_id"]]
        await until(lambda: waiting.version > accepted["version"], "the portal's wait to see the progress text")
        answers = []
        for query in (f"?wait=10&seen={accepted['version']}", "?wait=0.3&seen=1"):
            started = asyncio.get_running_loop().time()
            answers.append(((await http.get(url + query)).json(), asyncio.get_running_loop().time() - started))
        return [({"version": accepted["version"]}, 0.0), *answers]

    (accepted, _), (missed, missed_s), (held, held_s) = with_portal(fake_core, work)
    assert accepted["version"] == 0
    assert missed["status"] == "InProgress" and missed["status_message"] == PROGRESS and missed["version"] == 1
    assert missed_s < 1.0, "a change the page has not seen is not held back"
    assert held["version"] == 1 and held_s >= 0.25, "nothing new: held until the wait runs out"
