"""The code executor: one per service, shared by the Dynamic Sessions emulator and the custom container.

Design (see the module docstrings for details):

- ``worker.py`` -- every session runs in its own interpreter *process*, never in the server: a
  persistent ``python -I -B`` driven over pipes with a length-prefixed JSON protocol. Variables,
  imports and files persist between executions; a trailing expression's ``repr`` is the result.
- Sandbox, set up in the worker before any code runs, each step reported in ``/status`` and on the
  ``code_session.acquire`` span: rlimits (address space, CPU budget, processes, file size, open files,
  no core); a private network namespace (loopback only) when the server runs as root; a scrubbed
  environment; a uid per session (no groups, ``no_new_privs``) when root.
- ``/mnt/data``: in a private mount namespace the session folder is bind-mounted at ``/mnt/data``
  (cwd) and a per-session folder at ``/tmp``, exactly the paths code expects. Without one, cwd is
  the session folder and ``/mnt/data/...`` paths are rewritten to it by wrappers around ``open`` and
  the ``os`` path functions (pathlib goes through them).
- Session folders: ``<data dir>/sessions/<service>/<sha256 of the identifier>/{data,tmp}``.
- ``pool.py`` keeps ``pool_size`` workers started and sandboxed (nothing heavy imported), so a new
  session only pays an attach (bind mounts + uid switch, ~0.5 ms); refills run off the request path.
- A timeout kills the interpreter's process group (and the session uid's strays); the next execution
  of the session gets a new interpreter, with its files but not its variables.
- ``executor.Executor`` ties sessions, the pool, execution, spans and metrics together; the HTTP faces
  only translate their contracts (``services.dynamic_sessions``, ``services.code_session_api``).
"""

from services.code_execution.config import ExecutorConfig, SandboxLimits
from services.code_execution.executor import Executor
from services.code_execution.models import (
    PROVIDER_CODE_INTERPRETER,
    PROVIDER_CUSTOM_CONTAINER,
    ExecutionOutcome,
    ExecutionRecord,
    ExecutionSpec,
)
from services.code_execution.sessions import Session, SessionLimitError

__all__ = [
    "PROVIDER_CODE_INTERPRETER",
    "PROVIDER_CUSTOM_CONTAINER",
    "ExecutionOutcome",
    "ExecutionRecord",
    "ExecutionSpec",
    "Executor",
    "ExecutorConfig",
    "SandboxLimits",
    "Session",
    "SessionLimitError",
]
