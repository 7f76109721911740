"""The executor both HTTP faces share: sessions, the warm pool, execution, and its telemetry."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import threading
import time

from opentelemetry import metrics
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Span, Status, StatusCode

from services.code_execution.cgroups import CgroupLimits, CgroupUsage, SessionCgroup
from services.code_execution.config import MIB, ExecutorConfig
from services.code_execution.files import SessionFiles
from services.code_execution.host import HostSandbox
from services.code_execution.models import (
    FAILED,
    ExecutionFailure,
    ExecutionOutcome,
    ExecutionRecord,
    ExecutionSpec,
)
from services.code_execution.pool import WarmPool, WarmSandbox
from services.code_execution.process import WorkerError, WorkerProcess, kill_uid_processes
from services.code_execution.sessions import Session, SessionLimitError, SessionManager, Slot
from telemetry import conventions as c
from telemetry.context import annotate, hop_span, run_in_thread, spawn

log = logging.getLogger("foundationallm.code_execution")

# What the sandbox holds on this host (on code_session.acquire, as code_session.sandbox.<key>, and in
# /status). Not (yet) in telemetry.conventions.
ATTR_SANDBOX_PREFIX = "code_session.sandbox."


class Executor:
    def __init__(self, config: ExecutorConfig, provider: str, meter_provider: MeterProvider | None = None) -> None:
        self.config = config
        self.provider = provider
        uids = None
        if config.drop_privileges and os.geteuid() == 0:
            uids = range(config.uid_base, config.uid_base + config.uid_count)
        limits = config.limits
        self.sessions = SessionManager(
            config.sessions_dir, config.max_sessions, config.cooldown_s, uids,
            CgroupLimits(limits.memory_bytes, limits.cpu_cores, limits.processes), limits.disk_bytes,
        )
        self.pool = WarmPool(self._spawn_warm, self._discard_warm, config.pool_size)
        self.host = HostSandbox(config)
        self._reaper: asyncio.Task[None] | None = None
        meter = metrics.get_meter("fllm-callstack.code_execution", meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            c.METRIC_CODE_EXECUTION_DURATION, unit="s", description="Wall time of code executions"
        )
        self._acquisitions = meter.create_counter(
            c.METRIC_CODE_SESSION_ACQUIRE, unit="{acquisition}", description="Interpreters handed to executions"
        )
        self._oom_kills = meter.create_counter(
            c.METRIC_CODE_SESSION_OOM_KILLS, unit="{process}",
            description="Processes of code sessions the kernel killed at their session's memory limit",
        )
        self._throttled = meter.create_counter(
            c.METRIC_CODE_SESSION_THROTTLED, unit="{execution}",
            description="Executions their session's CPU quota held back at least once",
        )

    # --- life cycle ---

    async def start(self) -> None:
        await run_in_thread(self.sessions.prepare)
        await run_in_thread(self.host.probe, self.sessions)
        if self.host.bwrap is not None and not self.host.font_lists:  # once per machine; nobody waits for it
            threading.Thread(target=self.host.build_fonts, name="matplotlib-font-list", daemon=True).start()
        self.pool.start()
        self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await self.pool.close()
        await asyncio.gather(*(self._dispose(session, "the service stopped") for session in self.sessions.all()),
                             return_exceptions=True)
        try:
            if self.sessions.cgroups is not None:
                await run_in_thread(self.sessions.cgroups.remove)
        finally:
            await run_in_thread(self.sessions.unmount_all)  # whatever a failed release left mounted

    def status(self) -> dict[str, object]:
        return {
            "sessions": len(self.sessions),
            "max_sessions": self.config.max_sessions,
            "warm_pool": {"size": self.pool.size, "ready": self.pool.ready_count},
            "sandbox": dict(self.host.report),
        }

    async def _spawn(self, slot: Slot) -> WorkerProcess:
        return await WorkerProcess.spawn(self.host.command(slot), slot.cgroup, self.config.spawn_timeout_s,
                                         self.host.seccomp_filter)

    async def _spawn_warm(self) -> WarmSandbox:
        slot = self.sessions.new_slot()
        try:
            return WarmSandbox(slot, await self._spawn(slot))
        except BaseException:
            await run_in_thread(self.sessions.release_slot, slot)
            raise

    async def _discard_warm(self, warm: WarmSandbox) -> None:
        await warm.worker.close()
        await run_in_thread(self.sessions.release_slot, warm.slot)

    async def _reap_forever(self) -> None:
        interval = max(0.05, min(5.0, self.config.cooldown_s / 4))
        while True:
            await asyncio.sleep(interval)
            for session in self.sessions.expired():
                try:
                    await self._dispose(session, "the session expired")
                except Exception:  # keep reaping the others
                    log.exception("could not dispose of an expired session")

    @property
    def sandbox(self) -> dict[str, str]:
        """What the sandbox holds on this host."""
        return self.host.report

    # --- sessions ---

    def open_session(self, identifier: str) -> Session:
        """The live session for ``identifier`` (allocated on first use, in a warm sandbox when there is
        one); raises SessionLimitError."""
        session = self.sessions.get(identifier)
        if session is not None:
            return session
        self.sessions.check_room()
        warm = self.pool.take()
        try:
            session = self.sessions.open(identifier, warm.slot if warm else None)[0]
        except SessionLimitError:
            if warm is not None:
                self.pool.give_back(warm)
            raise
        if warm is not None:
            session.worker, session.worker_origin = warm.worker, "warm"
        return session

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
        await self._sweep(session)
        await run_in_thread(self.sessions.release_slot, session.slot)

    async def _sweep(self, session: Session) -> None:
        """Without a PID namespace or cgroup, processes that left the interpreter's group are found by uid."""
        if self.host.bwrap is None and session.slot.cgroup is None and session.uid is not None:
            await run_in_thread(kill_uid_processes, session.uid)

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
                result, session.worker_origin = session.worker_origin, "existing"
            else:
                session.worker = await self._spawn(session.slot)  # no warm sandbox, or the last one ended
                result, session.worker_origin = "cold", "existing"
            if session.closed:  # deleted or expired while the interpreter was starting
                await session.worker.close()
                raise WorkerError("the session was deleted")
            annotate({ATTR_SANDBOX_PREFIX + key: value for key, value in self.host.report.items()}, span)
            self._count_acquire(result, span)
            return session.worker

    def _count_acquire(self, result: str, span: Span) -> None:
        annotate({c.ATTR_CODE_SESSION_ACQUIRE: result}, span)
        self._acquisitions.add(1, {c.METRIC_ATTR_ACQUIRE: result})

    async def _execute(
        self, session: Session, worker: WorkerProcess, spec: ExecutionSpec, execution_id: str
    ) -> ExecutionOutcome:
        code_bytes = spec.code.encode("utf-8", "surrogatepass")
        attributes = {
            c.ATTR_CODE_EXECUTION_ID: execution_id,
            c.ATTR_CODE_SESSION_ID_HASH: session.id_hash,
            c.ATTR_CODE_SESSION_PROVIDER: self.provider,
            c.ATTR_CODE_SIZE: len(code_bytes),
            c.ATTR_CODE_SHA256: hashlib.sha256(code_bytes).hexdigest(),
            c.ATTR_CODE_EXECUTION_TYPE: spec.execution_type,
        }
        cgroup = session.slot.cgroup
        with hop_span(c.SPAN_CODE_EXECUTE, attributes) as span:
            before = cgroup.usage() if cgroup is not None else None
            started = time.perf_counter()
            stopped: WorkerError | None = None
            try:
                outcome = _outcome_of(
                    await worker.execute(spec.code, spec.max_output, spec.named_results, spec.timeout_s)
                )
            except WorkerError as error:
                # Everything the execution started ends with its sandbox; the next execution gets a new
                # interpreter in the same slot (files are kept).
                session.worker, stopped = None, error
                await worker.close()
                await self._sweep(session)
            duration_s = time.perf_counter() - started
            used: CgroupUsage | None = None
            if cgroup is not None and before is not None:
                used = cgroup.usage().since(before)
                self._record_usage(span, cgroup, used)
            if stopped is not None:
                limit_mb = self.config.limits.memory_bytes // MIB if used is not None and used.oom_kills else None
                outcome = _interpreter_failure(stopped, duration_s, spec.max_output, limit_mb)
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

    def _record_usage(self, span: Span, cgroup: SessionCgroup, used: CgroupUsage) -> None:
        """What the execution used of its session's cgroup: on its span, and in the limits' counters."""
        provider = {c.METRIC_ATTR_PROVIDER: self.provider}
        self._oom_kills.add(used.oom_kills or 0, provider)
        self._throttled.add(1 if used.throttled > 0 else 0, provider)
        annotate(
            {
                c.ATTR_CODE_OOM_KILLS: used.oom_kills,
                c.ATTR_CODE_MEMORY_PEAK: cgroup.peak_memory(),
                c.ATTR_CODE_MEMORY_LIMIT: self.config.limits.memory_bytes,
                c.ATTR_CODE_CPU_TIME: None if used.cpu_s is None else round(used.cpu_s, 6),
                c.ATTR_CODE_CPU_THROTTLED: used.throttled,
            },
            span,
        )

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
    results = reply.get("results")
    return ExecutionOutcome(
        status=str(reply.get("status", FAILED)),
        stdout=str(reply.get("stdout", "")),
        stderr=str(reply.get("stderr", "")),
        result=reply.get("result"),  # a JSON value, the repr text, or an image result (interpreter.results)
        results={str(k): str(v) for k, v in results.items()} if isinstance(results, dict) else {},
        time_ms=int(reply.get("time_ms", 0)),  # type: ignore[call-overload]
        stdout_bytes=int(reply.get("stdout_bytes", 0)),  # type: ignore[call-overload]
        stderr_bytes=int(reply.get("stderr_bytes", 0)),  # type: ignore[call-overload]
        failure=failure,
    )


def _interpreter_failure(
    error: WorkerError, elapsed_s: float, max_output: int, memory_limit_mb: int | None = None
) -> ExecutionOutcome:
    """``memory_limit_mb``: the session's memory limit, when the kernel killed processes at it meanwhile (the
    interpreter among them if it died of SIGKILL, as bwrap reports it or directly)."""
    if error.timed_out:
        failure = ExecutionFailure("CodeExecutionTimedOut", "TimeoutError", str(error))
    elif memory_limit_mb is not None and error.exit_code in (128 + signal.SIGKILL, -signal.SIGKILL):
        reason = f"the interpreter was killed at the session's memory limit ({memory_limit_mb} MiB)"
        failure = ExecutionFailure("CodeExecutionOutOfMemory", "MemoryError", reason)
    else:
        failure = ExecutionFailure("InterpreterFailed", "InterpreterError", str(error))
    note = (
        f"{failure.name}: {failure.message}. The session's interpreter was stopped; "
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

