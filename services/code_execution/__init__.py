"""The code executor: one per service, shared by the Dynamic Sessions emulator and the custom container.

Design (see the module docstrings for details):

- ``interpreter/`` -- every session runs in its own interpreter *process*, never in the server: a
  persistent ``python -I -S -B`` driven over two pipes with a length-prefixed JSON protocol, inside a
  bubblewrap sandbox (``interpreter/launcher.py``): a private minimal root (the Python installation and
  its site-packages read-only, nothing of the project but the interpreter package), its own PID, network,
  IPC and UTS namespaces, ``/mnt/data`` and ``/tmp`` as size-limited tmpfs, a uid per session, no
  descriptor but its pipes. Variables, imports and files persist between executions; a trailing
  expression's ``repr`` is the result.
- ``cgroups.py`` -- a cgroup per session (v1 or v2) for memory, CPU and processes: everything a session
  starts, daemons included, counts against it and ends with it. rlimits back it up.
- ``sessions.py`` -- a session owns a slot: folder, uid, cgroup and (as root) a tmpfs for ``/mnt/data``.
- ``pool.py`` keeps ``pool_size`` slots with a sandbox started in each, so a new session runs its first
  code at once; refills run off the request path.
- A timeout kills the session's sandbox (every process it started); the next execution gets a new one
  in the same slot, with the files but not the variables.
- ``executor.Executor`` ties sessions, the pool, execution, spans and metrics together and reports what
  the sandbox holds on this host (``/status``, ``code_session.sandbox.*`` on ``code_session.acquire``);
  the HTTP faces only translate their contracts (``services.dynamic_sessions``, ``services.code_session_api``).
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
