"""State API app: the store, long-poll waiters, and the sweeper that fails abandoned operations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI

from services.common.models import OperationStatus
from services.common.service import create_service
from services.common.settings import Settings
from services.state_api import routes
from services.state_api.store import OperationStore
from services.state_api.waiters import Waiters
from telemetry import conventions as c
from telemetry.context import context_from_traceparent, hop_span, record_failure

PACKAGE = "state_api"
log = logging.getLogger("foundationallm.state_api")
# The hop that runs an operation's workflow and keeps its status fresh (heartbeats while it works).
WORKER_HOP = c.LANGCHAIN_API


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    store = OperationStore(settings.data_dir)
    waiters = Waiters()
    sweeper: list[asyncio.Task[None]] = []
    started = datetime.now(UTC).isoformat()

    async def start() -> None:
        await store.on_ended(waiters.ended)
        sweeper.append(asyncio.get_running_loop().create_task(_sweep_forever(store, waiters, settings, started)))

    async def stop() -> None:
        for task in sweeper:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        store.close()

    app = create_service(PACKAGE, settings, title="StateAPI", on_startup=[start], on_shutdown=[stop])
    app.state.store, app.state.waiters = store, waiters
    app.include_router(routes.router)
    return app


def _who_stopped(row: dict[str, Any], stale_after_s: float, started: str) -> tuple[str, str]:
    """The hop to blame for an operation nobody writes any more, and why.

    A live worker writes a heartbeat every quarter of the stale window, and retries its end for a while.
    So when this State API started after the operation's last write, its writes stopped while State was
    down: the State API (killed, restarting) lost them. Otherwise the worker itself stopped.
    """
    if row["last_updated"] < started:
        return c.STATE_API, (f"{c.STATE_API}: the State API went down while the operation ran (restarted at "
                             f"{started}); the worker's writes were lost and no end arrived in {stale_after_s:.0f} s.")
    claimant = f" ({row['claimant']})" if row.get("claimant") else ""
    return WORKER_HOP, (f"{WORKER_HOP}: the operation made no progress for {stale_after_s:.0f} s;"
                        f" the worker that ran it stopped{claimant}.")


async def fail_abandoned(store: OperationStore, waiters: Waiters, stale_after_s: float,
                         started: str = "") -> int:
    """Fail in-progress operations whose worker stopped writing (its process died, its task was lost),
    naming the hop that stopped; ``started``: when this State API started (ISO)."""
    cutoff = (datetime.now(UTC) - timedelta(seconds=stale_after_s)).isoformat()
    abandoned = await store.in_progress_since(cutoff)
    for row in abandoned:
        hop, message = _who_stopped(row, stale_after_s, started)
        attributes = {c.ATTR_OPERATION_ID: row["operation_id"], c.ATTR_FAILED_HOP: hop}
        # In the operation's own trace, so the trace shows where and why it ended.
        operation_trace = context_from_traceparent(row["traceparent"])
        with hop_span("state.fail_abandoned_operation", attributes, ctx=operation_trace) as span:
            record_failure(TimeoutError(message), span, hop)
            operation = {
                "operation_id": row["operation_id"],
                "status": OperationStatus.FAILED.value,
                "status_message": message,
                "upn": row["upn"],
                "failed_hop": hop,
            }
            _, changed = await store.update(row["instance_id"], operation, row["traceparent"])
            if changed:
                waiters.ended(row["operation_id"])
    return len(abandoned)


async def _sweep_forever(store: OperationStore, waiters: Waiters, settings: Settings, started: str) -> None:
    interval = max(0.5, min(settings.operation_stale_after_s / 4, 10.0))
    while True:
        await asyncio.sleep(interval)
        try:
            await fail_abandoned(store, waiters, settings.operation_stale_after_s, started)
        except Exception:  # noqa: BLE001 - the database is down: the next sweep tries again
            log.exception("the sweep for abandoned operations failed")
