"""What the executor takes and gives back, independent of either HTTP face."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

PROVIDER_CODE_INTERPRETER = "AzureContainerAppsCodeInterpreter"
PROVIDER_CUSTOM_CONTAINER = "AzureContainerAppsCustomContainer"

SUCCEEDED, FAILED, RUNNING = "Succeeded", "Failed", "Running"
SYNCHRONOUS, ASYNCHRONOUS = "Synchronous", "Asynchronous"


@dataclass(frozen=True)
class ExecutionSpec:
    code: str
    timeout_s: float
    max_output: int
    execution_type: str = SYNCHRONOUS
    named_results: bool = False  # FoundationaLLM's code session API: variables named by the last statement


@dataclass(frozen=True)
class ExecutionFailure:
    code: str  # CodeExecutionFailed | CodeExecutionTimedOut | CodeExecutionOutOfMemory | InterpreterFailed
    name: str  # the Python exception type, or TimeoutError / MemoryError / InterpreterError
    message: str
    traceback: str = ""


@dataclass(frozen=True)
class ExecutionOutcome:
    status: str  # Succeeded | Failed
    stdout: str = ""
    stderr: str = ""
    # A trailing expression's JSON value or repr text ("" without one, None for a None value), or an image
    # result {"type": "image", "format": "png", "base64_data"} when the cell displayed a figure.
    result: Any = ""
    results: dict[str, str] = field(default_factory=dict)
    time_ms: int = 0
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    timed_out: bool = False
    failure: ExecutionFailure | None = None

    @property
    def outcome(self) -> str:
        """The metric's outcome: Succeeded | Failed | TimedOut."""
        return "TimedOut" if self.timed_out else self.status


@dataclass(eq=False)
class ExecutionRecord:
    """One execution of a session, kept for ``GET /executions/{id}``."""

    id: str
    identifier: str
    execution_type: str
    status: str = RUNNING
    outcome: ExecutionOutcome | None = None
    submitted_at: float = field(default_factory=time.time)
    task: asyncio.Task[None] | None = None

    def finish(self, outcome: ExecutionOutcome) -> None:
        self.outcome = outcome
        self.status = outcome.status
