"""The executor both HTTP faces share: sessions, the warm pool, execution, and its telemetry."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time

from opentelemetry import metrics
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Span, Status, StatusCode

from services.code_execution.config import ExecutorConfig
from services.code_execution.files import SessionFiles
from services.code_execution.models import (
    FAILED,
    ExecutionFailure,
    ExecutionOutcome,
    ExecutionRecord,
    ExecutionSpec,
)
from services.code_execution.pool import WarmPool
from services.code_execution.process import WorkerError, WorkerProcess, kill_uid_processes
from services.code_execution.sessions import Session, SessionManager
from services.code_execution.zygote import Zygote
from telemetry import conventions as c
from telemetry.context import annotate, hop_span, run_in_thread, spawn

log = logging.getLogger("foundationallm.code_execution")

# Sandbox attributes of a new interpreter (on code_session.acquire). Not (yet) in telemetry.conventions.
ATTR_SANDBOX_NETWORK = "code_session.sandbox.network"  # isolated | shared
ATTR_SANDBOX_FILESYSTEM = "code_session.sandbox.filesystem"  # mount-namespace | path-rewrite
ATTR_SANDBOX_IDENTITY = "code_session.sandbox.identity"  # session-uid | server-uid
ATTACH_TIMEOUT_S = 10.0


class Executor:
    def __init__(self, config: ExecutorConfig, provider: str, meter_provider: MeterProvider | None = None) -> None:
        self.config = config
        self.provider = provider
        uids = None
        if config.drop_privileges and os.geteuid() == 0:
            uids = range(config.uid_base, config.uid_base + config.uid_count)
        self.sessions = SessionManager(config.sessions_dir, config.max_sessions, config.cooldown_s, uids)
        self._zygote = Zygote(config.worker_config(), config.spawn_timeout_s) if config.zygote else None
        self.pool = WarmPool(self._spawn, config.pool_size)
        self.sandbox: dict[str, str] = {"identity": "session-uid" if uids is not None else "server-uid"}
        self._reaper: asyncio.Task[None] | None = None
        meter = metrics.get_meter("fllm-callstack.code_execution", meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            c.METRIC_CODE_EXECUTION_DURATION, unit="s", description="Wall time of code executions"
        )
        self._acquisitions = meter.create_counter(
            c.METRIC_CODE_SESSION_ACQUIRE, unit="{acquisition}", description="Interpreters handed to executions"
        )

    # --- life cycle ---

    async def start(self) -> None:
        await run_in_thread(self.sessions.prepare)
        self.pool.start()
        self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await self.pool.close()
        for session in self.sessions.all():
            await self._dispose(session, "the service stopped")
        if self._zygote is not None:
            await self._zygote.close()

    def status(self) -> dict[str, object]:
        return {
            "sessions": len(self.sessions),
            "max_sessions": self.config.max_sessions,
            "warm_pool": {"size": self.pool.size, "ready": self.pool.ready_count},
            "sandbox": dict(self.sandbox),
        }

    async def _spawn(self) -> WorkerProcess:
        if self._zygote is not None:
            try:
                return await self._zygote.fork(self.config.spawn_timeout_s)
            except WorkerError as error:  # started the long way; the next fork starts a new zygote
                log.warning("zygote: %s", error)
        return await WorkerProcess.spawn(self.config.worker_config(), self.config.spawn_timeout_s)

    async def _reap_forever(self) -> None:
        interval = max(0.05, min(5.0, self.config.cooldown_s / 4))
        while True:
            await asyncio.sleep(interval)
            for session in self.sessions.expired():
                try:
                    await self._dispose(session, "the session expired")
                except Exception:  # keep reaping the others
                    log.exception("could not dispose of an expired session")

    # --- sessions ---

    def open_session(self, identifier: str) -> Session:
        """The live session for ``identifier`` (allocated on first use); raises SessionLimitError."""
        return self.sessions.open(identifier)[0]

    def find_session(self, identifier: str) -> Session | None:
        return self.sessions.get(identifier)

    async def delete_session(self, identifier: str) -> bool:
        session = self.sessions.get(identifier)
        if session is None:
            return False
        await self._dispose(session, "the session was deleted")
        return True

    async def _dispose(self, session: Session, reason: str) -> None:
        if not self.sessions.remove(session):  # also moves its folder aside: the identifier is free again
            return
        if session.worker is not None:
            session.worker.kill(reason)
            await session.worker.close()
        if session.uid is not None:
            await run_in_thread(kill_uid_processes, session.uid)
        await run_in_thread(self.sessions.delete_folder, session)
        self.sessions.release_uid(session)

    def files(self, session: Session) -> SessionFiles:
        return SessionFiles(session.data_dir, session.uid)

    # --- executions ---

    async def run(self, session: Session, spec: ExecutionSpec, execution_id: str) -> ExecutionRecord:
        """Execute and wait; the finished record is also kept for ``find_execution``."""
        record = self._record(session, spec, execution_id)
        session.busy += 1
        try:
            await self._complete(session, record, spec)
        finally:
            session.busy -= 1
        return record

    def submit(self, session: Session, spec: ExecutionSpec, execution_id: str) -> ExecutionRecord:
        """Start an execution in the background (a child span of the caller's) and return its record."""
        record = self._record(session, spec, execution_id)
        session.busy += 1

        async def background() -> None:
            try:
                await self._complete(session, record, spec)
            finally:
                session.busy -= 1

        record.task = spawn(background())
        return record

    def find_execution(self, session: Session, execution_id: str) -> ExecutionRecord | None:
        return session.executions.get(execution_id)

    def _record(self, session: Session, spec: ExecutionSpec, execution_id: str) -> ExecutionRecord:
        record = ExecutionRecord(execution_id, session.identifier, spec.execution_type)
        session.executions[execution_id] = record
        while len(session.executions) > self.config.executions_kept:
            oldest = next(iter(session.executions.values()))
            if oldest.outcome is None:
                break
            session.executions.popitem(last=False)
        return record

    async def _complete(self, session: Session, record: ExecutionRecord, spec: ExecutionSpec) -> None:
        try:
            async with session.lock:
                try:
                    worker = await self._acquire(session)
                except WorkerError as error:
                    record.finish(self._unavailable(error))
                    return
                record.finish(await self._execute(session, worker, spec, record.id))
        finally:
            session.touch()

    async def _acquire(self, session: Session) -> WorkerProcess:
        attributes = {c.ATTR_CODE_SESSION_ID_HASH: session.id_hash, c.ATTR_CODE_SESSION_PROVIDER: self.provider}
        with hop_span(c.SPAN_CODE_SESSION_ACQUIRE, attributes) as span:
            if session.closed:
                raise WorkerError("the session was deleted")
            if session.worker is not None and session.worker.alive:
                self._count_acquire("existing", span)
                return session.worker
            worker, result = self.pool.take(), "warm"
            if worker is None or not await self._attach(session, worker):
                worker, result = await self._spawn(), "cold"  # no warm interpreter (or it failed to attach)
                if not await self._attach(session, worker):
                    raise WorkerError("the interpreter could not enter the session")
            if session.closed:  # deleted or expired while the interpreter was starting
                await worker.close()
                raise WorkerError("the session was deleted")
            session.worker = worker
            self.sandbox = worker.report().as_dict()
            annotate(
                {
                    ATTR_SANDBOX_NETWORK: self.sandbox["network"],
                    ATTR_SANDBOX_FILESYSTEM: self.sandbox["filesystem"],
                    ATTR_SANDBOX_IDENTITY: self.sandbox["identity"],
                },
                span,
            )
            self._count_acquire(result, span)
            return worker

    @staticmethod
    async def _attach(session: Session, worker: WorkerProcess) -> bool:
        try:
            await worker.attach(session.data_dir, session.tmp_dir, session.uid, ATTACH_TIMEOUT_S)
            return True
        except WorkerError as error:
            log.warning("an interpreter failed to attach: %s", error)
            await worker.close()
            return False

    def _count_acquire(self, result: str, span: Span) -> None:
        annotate({c.ATTR_CODE_SESSION_ACQUIRE: result}, span)
        self._acquisitions.add(1, {c.METRIC_ATTR_ACQUIRE: result})

    async def _execute(
        self, session: Session, worker: WorkerProcess, spec: ExecutionSpec, execution_id: str
    ) -> ExecutionOutcome:
        code_bytes = spec.code.encode("utf-8", "surrogatepass")
        attributes = {
            c.ATTR_GEN_AI_OPERATION: "execute_tool",
            c.ATTR_GEN_AI_TOOL_NAME: "code_interpreter",
            c.ATTR_GEN_AI_TOOL_TYPE: "extension",
            c.ATTR_GEN_AI_TOOL_CALL_ID: execution_id,
            c.ATTR_CODE_SESSION_ID_HASH: session.id_hash,
            c.ATTR_CODE_SESSION_PROVIDER: self.provider,
            c.ATTR_CODE_SIZE: len(code_bytes),
            c.ATTR_CODE_SHA256: hashlib.sha256(code_bytes).hexdigest(),
            c.ATTR_CODE_EXECUTION_TYPE: spec.execution_type,
        }
        with hop_span(c.SPAN_CODE_EXECUTE, attributes) as span:
            started = time.perf_counter()
            try:
                reply = await worker.execute(spec.code, spec.max_output, spec.named_results, spec.timeout_s)
                outcome = _outcome_of(reply)
            except WorkerError as error:
                session.worker = None  # the next execution gets a new interpreter; files are kept
                outcome = _interpreter_failure(error, time.perf_counter() - started, spec.max_output)
                if session.uid is not None:
                    await run_in_thread(kill_uid_processes, session.uid)  # strays outside the group
            duration_s = time.perf_counter() - started
            annotate(
                {
                    c.ATTR_CODE_STATUS: outcome.status,
                    c.ATTR_CODE_TIMED_OUT: outcome.timed_out,
                    c.ATTR_CODE_EXECUTION_MS: outcome.time_ms,
                    c.ATTR_CODE_STDOUT_SIZE: outcome.stdout_bytes,
                    c.ATTR_CODE_STDERR_SIZE: outcome.stderr_bytes,
                },
                span,
            )
            if outcome.failure is not None:
                _mark_failed(span, outcome.failure)
            self._duration.record(
                duration_s, {c.METRIC_ATTR_PROVIDER: self.provider, c.METRIC_ATTR_OUTCOME: outcome.outcome}
            )
            return outcome

    def _unavailable(self, error: WorkerError) -> ExecutionOutcome:
        self._duration.record(0.0, {c.METRIC_ATTR_PROVIDER: self.provider, c.METRIC_ATTR_OUTCOME: FAILED})
        message = f"No interpreter is available for the session: {error}"
        return ExecutionOutcome(
            FAILED, stderr=message, stderr_bytes=len(message),
            failure=ExecutionFailure("InterpreterUnavailable", "InterpreterError", message),
        )


def _outcome_of(reply: dict[str, object]) -> ExecutionOutcome:
    error = reply.get("error")
    failure = None
    if isinstance(error, dict):
        failure = ExecutionFailure(
            "CodeExecutionFailed", str(error.get("name", "Exception")), str(error.get("message", "")),
            str(error.get("traceback", "")),
        )
    result = reply.get("result")
    results = reply.get("results")
    return ExecutionOutcome(
        status=str(reply.get("status", FAILED)),
        stdout=str(reply.get("stdout", "")),
        stderr=str(reply.get("stderr", "")),
        result=None if result is None else str(result),
        results={str(k): str(v) for k, v in results.items()} if isinstance(results, dict) else {},
        time_ms=int(reply.get("time_ms", 0)),  # type: ignore[call-overload]
        stdout_bytes=int(reply.get("stdout_bytes", 0)),  # type: ignore[call-overload]
        stderr_bytes=int(reply.get("stderr_bytes", 0)),  # type: ignore[call-overload]
        failure=failure,
    )


def _interpreter_failure(error: WorkerError, elapsed_s: float, max_output: int) -> ExecutionOutcome:
    if error.timed_out:
        failure = ExecutionFailure("CodeExecutionTimedOut", "TimeoutError", str(error))
    else:
        failure = ExecutionFailure("InterpreterFailed", "InterpreterError", str(error))
    note = (
        f"{failure.name}: {error}. The session's interpreter was stopped; "
        "the next execution starts a new one (variables are lost, files are kept).\n"
    )
    return ExecutionOutcome(
        FAILED, stderr=note[:max_output], stderr_bytes=len(note), time_ms=int(round(elapsed_s * 1000)),
        timed_out=error.timed_out, failure=failure,
    )


def _mark_failed(span: Span, failure: ExecutionFailure) -> None:
    """ERROR with the exception recorded: its type only for code failures (messages may carry data)."""
    ours = failure.code != "CodeExecutionFailed"
    message = failure.message if ours else f"the code raised {failure.name}"
    if span.is_recording():
        span.add_event("exception", {"exception.type": failure.name, "exception.message": message[:512]})
        span.set_attribute("error.type", failure.name)
        span.set_status(Status(StatusCode.ERROR, f"{failure.code}: {failure.name}"))

