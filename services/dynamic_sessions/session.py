"""``GET/DELETE /session`` and the pool-level ``GET /metadata`` and ``GET /listSessions``."""

from __future__ import annotations

import functools
import importlib.metadata
import platform
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from services.dynamic_sessions.params import SessionCall, executions_api, pool_api, require_bearer

router = APIRouter(dependencies=[Depends(require_bearer)])
PAGE_SIZE = 100
STARTED_AT = datetime.now(UTC).isoformat().replace("+00:00", "Z")


@router.get("/session", summary="Get the session")
async def get_session(call: SessionCall = Depends(executions_api)) -> JSONResponse:
    return JSONResponse(call.session().info())


@router.delete("/session", status_code=204, summary="Delete the session (its interpreter and files)")
async def delete_session(call: SessionCall = Depends(executions_api)) -> Response:
    await call.executor.delete_session(call.identifier)  # idempotent: an unknown session is already gone
    return Response(status_code=204)


@router.get("/listSessions", summary="List the pool's sessions")
async def list_sessions(request: Request, skip: int = Query(0, ge=0), _: str = Depends(pool_api)) -> JSONResponse:
    sessions = request.app.state.executor.sessions.all()
    page = [session.info() for session in sessions[skip : skip + PAGE_SIZE]]
    return JSONResponse({"sessions": page, "nextLink": None})


@functools.cache
def installed_packages() -> list[dict[str, str]]:
    """What code in a session can import: the distributions of the site-packages the sandbox binds
    (numpy, pandas, matplotlib and their dependencies among them), by name."""
    found = {}
    for distribution in importlib.metadata.distributions():
        name = distribution.metadata["Name"]
        if name:
            found.setdefault(name.lower(), {"name": name, "version": distribution.version})
    return [found[key] for key in sorted(found)]


@router.get("/metadata", summary="The pool's runtime")
async def metadata(_: str = Depends(pool_api)) -> JSONResponse:
    version = platform.python_version()
    return JSONResponse(
        {
            "runtimes": [{"name": "python", "version": version}],
            "preInstalledPackages": installed_packages(),
            "createdAt": STARTED_AT,
            "lastUpdatedAt": STARTED_AT,
            "jupyterKernel": {
                "name": "python3",
                "version": version,
                "projectUrl": "https://www.python.org/",
                "description": "A sandboxed CPython process per session (fllm-callstack emulator), not Jupyter.",
            },
        }
    )
