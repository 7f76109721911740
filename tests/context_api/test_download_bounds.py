"""What the Context API copies out of a session: bounded per download (files and bytes), a file past the
bound named in the errors, nothing kept when a download fails half-way or its operation is discarded; and
the execution timeout reaching both providers (the custom container's too), against the real providers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from services.context_api.config import CODE_INTERPRETER, CUSTOM_CONTAINER, MIB
from services.context_api.providers import DownloadTooLargeError, ProviderError, SessionFile, SessionTarget
from tests.context_api.conftest import (
    ALICE,
    BASE,
    BOB,
    Providers,
    app_for,
    create_body,
    headers_for,
    post,
    running,
)

pytestmark = pytest.mark.chain  # both providers run as their own processes

MAKE_FILES = (
    "import os\nos.makedirs('/mnt/data/out', exist_ok=True)\n"
    "open('/mnt/data/big.bin', 'wb').write(b'x' * (2 * 1024 * 1024))\n"
    "for n in range(4):\n    open(f'/mnt/data/out/small{n}.txt', 'w').write(f'file {n}')\n"
)
BOUND = {"max_download_files": 2, "max_download_bytes": 1 * MIB}


def blobs(data_dir: Path) -> list[Path]:
    return [path for path in (data_dir / "context_files").rglob("*") if path.is_file()]


async def session_with_files(client: Any, provider: str, conversation: str) -> tuple[str, str]:
    session = (await post(client, "/codeSessions", create_body(provider, conversation)))["session_id"]
    upload = await post(client, f"/codeSessions/{session}/uploadFiles", {"file_names": []})
    result = await post(client, f"/codeSessions/{session}/executeCode", {"code_to_execute": MAKE_FILES})
    assert result["status"] == "Succeeded", result
    return session, upload["operation_id"]


@pytest.mark.parametrize("provider", [CODE_INTERPRETER, CUSTOM_CONTAINER])
def test_a_download_is_bounded_and_names_what_it_left(providers: Providers, tmp_path: Path, provider: str) -> None:
    app = app_for(providers, tmp_path, **BOUND)

    async def scenario() -> None:
        async with running(app) as client:
            session, operation = await session_with_files(client, provider, f"conv-bound-{provider[-5:]}")
            download = await post(client, f"/codeSessions/{session}/downloadFiles", {"operation_id": operation})
            kept = sorted(record["metadata"]["code_session_file_path"] for record in download["file_records"].values())
            assert len(kept) == 2 and all(path.startswith("/out/small") for path in kept), kept
            errors = download["errors"]
            big = [error for error in errors if error.startswith("/big.bin: ")]
            assert len(big) == 1 and "1 MB per operation" in big[0], errors
            counted = [error for error in errors if "2 files per operation" in error]
            assert len(counted) == 2 and len(errors) == 3, errors  # the two small files past the count
            assert len(blobs(tmp_path)) == 2 and sum(p.stat().st_size for p in blobs(tmp_path)) < 100

    asyncio.run(scenario())


@pytest.mark.parametrize("provider", [CODE_INTERPRETER, CUSTOM_CONTAINER])
def test_a_download_that_fails_half_way_keeps_nothing(providers: Providers, tmp_path: Path, provider: str) -> None:
    app = app_for(providers, tmp_path, max_download_files=10, max_download_bytes=8 * MIB)

    async def scenario() -> None:
        async with running(app) as client:
            session, operation = await session_with_files(client, provider, f"conv-half-{provider[-5:]}")
            real = app.state.context.service.providers[provider]
            calls: list[str] = []
            download_file = real.download_file

            async def failing_third(target: Any, file: Any, max_bytes: int) -> bytes | None:
                calls.append(file.path)
                if len(calls) == 3:  # the pool dies after two files were copied
                    raise ProviderError(real.hop, real.name, "could not be reached for GET (test fault)")
                return await download_file(target, file, max_bytes)

            real.download_file = failing_third
            response = await client.post(f"{BASE}/codeSessions/{session}/downloadFiles",
                                         json={"operation_id": operation}, headers=headers_for())
            assert response.status_code == 502 and response.json()["provider"] == provider, response.text
            assert len(calls) == 3 and blobs(tmp_path) == []
            real.download_file = download_file
            download = await post(client, f"/codeSessions/{session}/downloadFiles", {"operation_id": operation})
            assert len(download["file_records"]) == 5 and len(blobs(tmp_path)) == 5

    asyncio.run(scenario())


def test_discarding_an_operation_removes_its_files_and_only_its_users(providers: Providers, tmp_path: Path) -> None:
    app = app_for(providers, tmp_path)

    async def scenario() -> None:
        async with running(app) as client:
            session, operation = await session_with_files(client, CUSTOM_CONTAINER, "conv-discard")
            download = await post(client, f"/codeSessions/{session}/downloadFiles", {"operation_id": operation})
            ids = sorted(download["file_records"])
            assert len(ids) == 5 and len(blobs(tmp_path)) == 5
            other = await client.post(f"{BASE}/codeSessions/{session}/discardFiles", json={"operation_id": operation},
                                      headers=headers_for(BOB))
            assert other.status_code == 404 and len(blobs(tmp_path)) == 5  # Bob cannot discard Alice's files
            discarded = await post(client, f"/codeSessions/{session}/discardFiles", {"operation_id": operation})
            assert sorted(discarded["discarded"]) == ids and blobs(tmp_path) == []
            for file_id in ids:
                gone = await client.get(f"{BASE}/files/{file_id}", headers=headers_for(ALICE))
                assert gone.status_code == 404
            again = await post(client, f"/codeSessions/{session}/discardFiles", {"operation_id": operation})
            assert again["discarded"] == []
            missing = await client.post(f"{BASE}/codeSessions/{session}/discardFiles", json={"operation_id": "nope"},
                                        headers=headers_for())
            assert missing.status_code == 404 and missing.json()["errors"][0]["field"] == "operation_id"

    asyncio.run(scenario())


@pytest.mark.parametrize("provider", [CODE_INTERPRETER, CUSTOM_CONTAINER])
def test_the_execution_timeout_reaches_either_provider(providers: Providers, tmp_path: Path, provider: str) -> None:
    app = app_for(providers, tmp_path, execution_timeout_s=3)

    async def scenario() -> None:
        async with running(app) as client:
            session = (await post(client, "/codeSessions", create_body(provider, f"conv-t-{provider[-5:]}")))
            path = f"/codeSessions/{session['session_id']}/executeCode"
            started = time.monotonic()
            result = await post(client, path, {"code_to_execute": "import time\ntime.sleep(30)\nprint('done')"})
            elapsed = time.monotonic() - started
            assert result["status"] == "Failed" and "done" not in result["standard_output"], result
            assert "timeout" in result["error_output"].lower(), result
            assert 2.5 < elapsed < 10, elapsed
            after = await post(client, path, {"code_to_execute": "print('alive')"})
            assert after["status"] == "Succeeded" and after["standard_output"] == "alive\n", after

    asyncio.run(scenario())


@pytest.mark.parametrize("provider", [CODE_INTERPRETER, CUSTOM_CONTAINER])
def test_a_file_larger_than_its_listing_said_is_cut_at_the_bound(providers: Providers, tmp_path: Path,
                                                                 provider: str) -> None:
    """The listing's size is the pool's word (a file may grow after it): the body itself is held to the bound."""
    app = app_for(providers, tmp_path, **BOUND)

    async def scenario() -> None:
        async with running(app) as client:
            session, _ = await session_with_files(client, provider, f"conv-lie-{provider[-5:]}")
            pool = app.state.context.service.providers[provider]
            endpoint = app.state.context.config.endpoint_for(provider, "Python")
            small_claim = SessionFile(name="big.bin", parent_path="/", size=10)
            with pytest.raises(DownloadTooLargeError) as raised:
                await pool.download_file(SessionTarget(endpoint, session), small_claim, 1 * MIB)
            assert raised.value.size > 1 * MIB
            whole = await pool.download_file(SessionTarget(endpoint, session), small_claim, 4 * MIB)
            assert whole == b"x" * (2 * MIB)

    asyncio.run(scenario())
