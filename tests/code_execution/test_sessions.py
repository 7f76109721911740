"""Sessions: state, limits of an execution, the sandbox, expiry, the session limit, warm vs cold."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator

import pytest

from services.code_execution import SandboxLimits
from tests.code_execution.conftest import API, AUTH, Harness, LoopThread, make_config, settings_for
from tests.wait import wait_until


def new_id() -> str:
    return f"s-{uuid.uuid4().hex[:12]}"


def running(pid: int) -> bool:
    """Alive and not a zombie (this machine's init may leave killed orphans unreaped)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return not any(line.startswith("State:") and "Z" in line for line in status)
    except FileNotFoundError:
        return False


def session_processes(uid: int | None) -> list[int]:
    """Host pids running as a session's uid."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and uid is not None and os.stat(f"/proc/{entry}").st_uid == uid:
                found.append(int(entry))
        except FileNotFoundError:
            continue
    return found


def result_of(harness: Harness, identifier: str, code: str, **fields: object) -> dict[str, object]:
    body = harness.execute(identifier, code, **fields).json()
    return body


def test_variables_imports_functions_and_files_persist(emulator: Harness) -> None:
    identifier = new_id()
    first = result_of(emulator, identifier, "import math\nradius = 2\ndef area(r): return math.pi * r * r\n"
                                            "open('notes.txt', 'w').write('kept')")
    assert first["status"] == "Succeeded"
    second = result_of(emulator, identifier, "print(round(area(radius), 2), open('/mnt/data/notes.txt').read())")
    assert second["result"]["stdout"] == "12.57 kept\n"
    other = result_of(emulator, new_id(), "radius")
    assert other["status"] == "Failed" and "NameError" in other["result"]["stderr"]


def test_installed_packages_can_be_imported(emulator: Harness) -> None:
    # The interpreter starts without site (-S) and puts the site-packages folders on its path itself.
    body = result_of(emulator, new_id(), "import pydantic, httpx\nprint(pydantic.__name__, httpx.__name__)")
    assert body["status"] == "Succeeded", body["result"]
    assert body["result"]["stdout"] == "pydantic httpx\n"


def test_output_streams_are_capped(emulator: Harness) -> None:
    identifier = new_id()
    capped = result_of(emulator, identifier, "import sys\nprint('a' * 10000)\nsys.stderr.write('e' * 500)",
                       outputStreamsMaxLength=100)
    assert capped["result"]["stdout"] == "a" * 100 and capped["result"]["stderr"] == "e" * 100
    default = result_of(emulator, identifier, "print('b' * 10000)")
    assert default["result"]["stdout"] == "b" * 4096


def test_timeout_kills_the_interpreter_and_its_children(emulator: Harness) -> None:
    identifier = new_id()
    result_of(emulator, identifier, "state = 'lost'\nopen('kept.txt', 'w').write('files stay')")
    code = (
        "import subprocess, os\n"
        "child = subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
        "print(child.pid, flush=True)\nopen('child.pid', 'w').write(str(child.pid))\n"
        "while True:\n    pass\n"
    )
    started = time.monotonic()
    body = result_of(emulator, identifier, code, timeoutInSeconds=1)
    elapsed = time.monotonic() - started
    assert body["status"] == "Failed" and 0.9 < elapsed < 5
    assert body["error"]["error"]["code"] == "CodeExecutionTimedOut"
    assert "TimeoutError" in body["result"]["stderr"]
    session = emulator.executor.find_session(identifier)
    assert session is not None and session.worker is None
    assert session_processes(session.uid) == []  # the child that left the process group ended with the sandbox
    after = result_of(emulator, identifier, "print(open('kept.txt').read())\nstate")
    assert after["result"]["stdout"] == "files stay\n" and "NameError" in after["result"]["stderr"]


def test_memory_limit_raises_memory_error_and_the_session_survives(emulator: Harness) -> None:
    identifier = new_id()
    body = result_of(emulator, identifier, "big = bytearray(3 * 1024 ** 3)")
    assert body["status"] == "Failed" and "MemoryError" in body["result"]["stderr"]
    assert result_of(emulator, identifier, "print('still here')")["result"]["stdout"] == "still here\n"


def test_environment_is_scrubbed(emulator: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    code = (
        "import os, json\n"
        "leaks = [k for k in os.environ if k.startswith(('FLLM', 'OTEL', 'APPLICATIONINSIGHTS', 'AZURE'))]\n"
        "try:\n    parent = open(f'/proc/{os.getppid()}/environ', 'rb').read().decode(errors='replace')\n"
        "except OSError as e:\n    parent = type(e).__name__\n"
        "print(json.dumps({'leaks': leaks, 'parent': parent, 'keys': sorted(os.environ)}))"
    )
    report = json.loads(result_of(emulator, new_id(), code)["result"]["stdout"])
    assert report["leaks"] == []
    assert set(report["keys"]) <= {"PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "MPLBACKEND", "PYTHONIOENCODING"}
    if emulator.executor.sandbox["identity"] == "session-uid":
        assert report["parent"] == "PermissionError"  # the server's own environment is out of reach


def test_sandbox_denies_the_network_where_the_platform_allows(emulator: Harness) -> None:
    identifier = new_id()
    result_of(emulator, identifier, "1")
    if emulator.executor.sandbox["network"] != "isolated":
        pytest.skip("no private network namespace on this platform")
    code = (
        "import socket\nfailures = []\n"
        "for host in ('127.0.0.1', '10.0.0.1'):\n"
        "    try:\n        socket.create_connection((host, 22), timeout=0.5)\n"
        "    except OSError as e:\n        failures.append(type(e).__name__)\n"
        "failures"
    )
    assert result_of(emulator, identifier, code)["result"]["executionResult"] == ["ConnectionRefusedError", "OSError"]


def test_full_sandbox_applies_when_running_as_root(emulator: Harness) -> None:
    emulator.execute(new_id(), "1")
    if os.geteuid() != 0:
        pytest.skip("namespaces and per-session uids need root")
    assert emulator.executor.sandbox == {
        "isolation": "bwrap", "network": "isolated", "filesystem": "private-root", "processes": "pid-namespace",
        "identity": "session-uid", "limits": emulator.executor.sandbox["limits"], "disk": "tmpfs-quota",
        "syscalls": emulator.executor.sandbox["syscalls"],
    }
    assert emulator.executor.sandbox["limits"].startswith("cgroup-v")
    assert emulator.executor.sandbox["syscalls"].startswith("seccomp (")


def test_temporary_folders_are_private_to_the_session(emulator: Harness) -> None:
    writer, reader = new_id(), new_id()
    result_of(emulator, writer, "1")
    if emulator.executor.sandbox["filesystem"] != "private-root":
        pytest.skip("no sandbox on this platform")
    marker = uuid.uuid4().hex
    code = "\n".join(f"open('{folder}/{marker}', 'w').write('x')" for folder in ("/tmp", "/var/tmp", "/dev/shm"))
    assert result_of(emulator, writer, code)["status"] == "Succeeded"
    seen = result_of(emulator, reader, f"import os\n[os.path.exists(f'{{d}}/{marker}') for d in "
                                       "('/tmp', '/var/tmp', '/dev/shm')]")
    assert seen["result"]["executionResult"] == [False, False, False]


def test_mnt_data_is_the_session_folder(emulator: Harness) -> None:
    identifier = new_id()
    body = result_of(emulator, identifier, "import os\nopen('/mnt/data/a.txt', 'w').write('x')\nos.getcwd()")
    assert body["result"]["executionResult"] == "'/mnt/data'"
    session = emulator.executor.find_session(identifier)
    assert session is not None and (session.data_dir / "a.txt").read_text() == "x"


def test_session_resource_and_delete(emulator: Harness) -> None:
    identifier = new_id()
    result_of(emulator, identifier, "value = 1\nopen('f.txt', 'w').write('x')")
    info = emulator.request("GET", f"/session?api-version={API}&identifier={identifier}", headers=AUTH)
    assert info.status_code == 200
    assert set(info.json()) == {"identifier", "createdAt", "lastAccessedAt", "expireAt", "etag"}
    deleted = emulator.request("DELETE", f"/session?api-version={API}&identifier={identifier}", headers=AUTH)
    assert deleted.status_code == 204 and deleted.content == b""
    fresh = result_of(emulator, identifier, "import os\nprint(os.listdir('.'))\nvalue")
    assert fresh["result"]["stdout"] == "[]\n" and "NameError" in fresh["result"]["stderr"]
    again = emulator.request("DELETE", f"/session?api-version={API}&identifier={new_id()}", headers=AUTH)
    assert again.status_code == 204


def test_metadata_and_list_sessions(emulator: Harness) -> None:
    identifier = new_id()
    result_of(emulator, identifier, "1")
    metadata = emulator.request("GET", f"/metadata?api-version={API}", headers=AUTH).json()
    assert metadata["runtimes"][0]["name"] == "python" and "jupyterKernel" in metadata
    listed = emulator.request("GET", f"/listSessions?api-version={API}", headers=AUTH).json()
    assert identifier in {session["identifier"] for session in listed["sessions"]}


def test_acquire_is_warm_for_a_new_session_then_existing(emulator: Harness, span_exporter) -> None:  # noqa: ANN001
    identifier = new_id()
    emulator.loop.run(emulator.executor.pool.wait_ready())
    span_exporter.clear()
    result_of(emulator, identifier, "1")
    result_of(emulator, identifier, "2")
    results = [span.attributes["code_session.acquire.result"] for span in span_exporter.get_finished_spans()
               if span.name == "code_session.acquire"]
    assert results == ["warm", "existing"]


def test_deleting_a_session_stops_its_running_execution(emulator: Harness) -> None:
    identifier = new_id()
    submitted = emulator.execute(identifier, "import time\ntime.sleep(60)", executionType="Asynchronous")
    assert submitted.status_code == 202
    session = emulator.executor.find_session(identifier)
    for _ in range(100):
        if session.worker is not None:
            break
        time.sleep(0.01)
    pid = session.worker.pid
    started = time.monotonic()
    deleted = emulator.request("DELETE", f"/session?api-version={API}&identifier={identifier}", headers=AUTH)
    assert deleted.status_code == 204 and time.monotonic() - started < 3
    wait_until(lambda: not running(pid), "the interpreter to end", 5.0)
    assert not session.folder.exists()
    record = emulator.executor.find_execution(session, submitted.json()["id"])
    assert record is not None
    wait_until(lambda: record.status == "Failed", "the execution to be failed", 5.0)


@pytest.fixture(scope="module")
def small_pool(tmp_path_factory: pytest.TempPathFactory, loop_thread: LoopThread, span_exporter) -> Iterator[Harness]:  # noqa: ANN001
    """No warm pool, two sessions at most, two seconds of cooldown."""
    from services.dynamic_sessions import create_app

    tmp = tmp_path_factory.mktemp("small")
    config = make_config(tmp, pool_size=0, max_sessions=2, cooldown_s=2.0)
    harness = Harness(create_app(settings_for(tmp), config), loop_thread).start()
    yield harness
    harness.stop()


def test_session_limit_answers_404_until_a_session_ends(small_pool: Harness) -> None:
    first, second, third = new_id(), new_id(), new_id()
    assert small_pool.execute(first, "1").status_code == 200
    assert small_pool.execute(second, "1").status_code == 200
    refused = small_pool.execute(third, "1")
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == refused.headers["x-ms-error-code"] == "SessionLimitExceeded"
    files = small_pool.request("GET", f"/files?api-version={API}&identifier={third}", headers=AUTH)
    assert files.status_code == 404
    small_pool.request("DELETE", f"/session?api-version={API}&identifier={first}", headers=AUTH)
    assert small_pool.execute(third, "1").status_code == 200
    small_pool.request("DELETE", f"/session?api-version={API}&identifier={second}", headers=AUTH)
    small_pool.request("DELETE", f"/session?api-version={API}&identifier={third}", headers=AUTH)


def test_idle_sessions_expire_and_every_call_resets_the_cooldown(small_pool: Harness, span_exporter) -> None:  # noqa: ANN001
    identifier = new_id()
    span_exporter.clear()
    assert small_pool.execute(identifier, "kept = 1").json()["status"] == "Succeeded"
    for _ in range(5):  # calls every 0.5 s keep the session alive past its 2 s cooldown
        time.sleep(0.5)
        assert small_pool.request("GET", f"/files?api-version={API}&identifier={identifier}",
                                  headers=AUTH).status_code == 200
    assert small_pool.execute(identifier, "kept").json()["result"]["executionResult"] == 1
    folder = small_pool.executor.find_session(identifier).folder
    live = small_pool.executor.sessions.all  # not sessions.get: it would reset the cooldown
    wait_until(lambda: identifier not in {s.identifier for s in live()}, "the reaper to end the session", 10.0)
    wait_until(lambda: not folder.exists(), "the session's folder to go", 5.0)
    expired = small_pool.execute(identifier, "kept").json()  # a new session of the same identifier
    assert "NameError" in expired["result"]["stderr"]
    results = [span.attributes["code_session.acquire.result"] for span in span_exporter.get_finished_spans()
               if span.name == "code_session.acquire"]
    assert results == ["cold", "existing", "cold"]  # no warm pool here


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory, loop_thread: LoopThread, span_exporter) -> Iterator[Harness]:  # noqa: ANN001
    """Small resource limits: 2 CPU seconds per interpreter, 8 processes, 1 MiB files."""
    from services.dynamic_sessions import create_app

    tmp = tmp_path_factory.mktemp("tight")
    limits = SandboxLimits(cpu_seconds=2, processes=8, file_size_bytes=1024 * 1024)
    harness = Harness(create_app(settings_for(tmp), make_config(tmp, pool_size=1, limits=limits)), loop_thread)
    yield harness.start()
    harness.stop()


def test_cpu_limit_stops_a_runaway_interpreter(tight: Harness) -> None:
    started = time.monotonic()
    body = tight.execute(new_id(), "while True: pass", timeoutInSeconds=60).json()
    # Stopped by its 2 CPU seconds, well before the 60 s timeout (on a busy host 2 CPU seconds take longer).
    assert time.monotonic() - started < 40
    assert body["status"] == "Failed" and body["error"]["error"]["code"] == "InterpreterFailed"
    assert "SIGXCPU" in body["result"]["stderr"] and "CPU time limit" in body["result"]["stderr"]


def test_file_size_limit(tight: Harness) -> None:
    body = tight.execute(new_id(), "open('big.bin', 'wb').write(b'x' * (2 * 1024 * 1024))").json()
    assert body["status"] == "Failed" and "File too large" in body["result"]["stderr"]


def test_process_limit(tight: Harness) -> None:
    identifier = new_id()
    tight.execute(identifier, "1")
    if tight.executor.sandbox["identity"] != "session-uid":
        pytest.skip("RLIMIT_NPROC does not bind root; the interpreter keeps the server's uid here")
    code = (
        "import subprocess\nprocs, outcome = [], 'unlimited'\n"
        "try:\n    for _ in range(20):\n        procs.append(subprocess.Popen(['sleep', '30']))\n"
        "except OSError as error:\n    outcome = type(error).__name__\n"
        "for p in procs:\n    p.kill()\n    p.wait()\n"
        "(len(procs) < 8, outcome)"
    )
    assert tight.execute(identifier, code).json()["result"]["executionResult"] == "(True, 'BlockingIOError')"


def test_a_busy_session_does_not_expire(small_pool: Harness) -> None:
    identifier = new_id()
    body = small_pool.execute(identifier, "import time\nvalue = 7\ntime.sleep(2.5)").json()
    assert body["status"] == "Succeeded"  # ran longer than the 2 s cooldown
    assert small_pool.execute(identifier, "value").json()["result"]["executionResult"] == 7
    small_pool.request("DELETE", f"/session?api-version={API}&identifier={identifier}", headers=AUTH)
