"""``GET/DELETE /session`` and the pool-level ``GET /metadata`` and ``GET /listSessions``."""

from __future__ import annotations

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


@router.get("/metadata", summary="The pool's runtime")
async def metadata(_: str = Depends(pool_api)) -> JSONResponse:
    version = platform.python_version()
    return JSONResponse(
        {
            "runtimes": [{"name": "python", "version": version}],
            "preInstalledPackages": [],
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
