"""Hostile code against the real executor (bwrap sandbox, cgroups, tmpfs quotas) in the emulator.

Each test plays a tenant that tries to reach the server, the host or another session, or to exhaust
the machine. They need the full sandbox (root, bwrap, writable cgroups) and are skipped without it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.code_execution import ExecutionSpec, Executor, SandboxLimits
from services.code_execution.cgroups import CgroupRoot
from services.code_execution.config import MIB
from services.code_execution.sessions import Session
from telemetry import conventions as c
from tests.code_execution.conftest import API, AUTH, Harness, LoopThread, make_config, settings_for, spans_named
from tests.hostile_code import DISK_BOMB, FORK_BOMB, memory_bomb
from tests.wait import wait_until

REPO = Path(__file__).resolve().parents[2]
LIMITS = SandboxLimits(memory_bytes=1024 * MIB, cpu_cores=0.5, processes=64, disk_bytes=500 * MIB)


def new_id() -> str:
    return f"hostile-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, loop_thread: LoopThread, span_exporter) -> Iterator[Harness]:  # noqa: ANN001
    from services.dynamic_sessions import create_app

    tmp = tmp_path_factory.mktemp("hostile")
    harness = Harness(create_app(settings_for(tmp), make_config(tmp, pool_size=2, limits=LIMITS)), loop_thread)
    harness.start()
    sandbox = harness.executor.sandbox
    full = sandbox["isolation"] == "bwrap" and sandbox["disk"] == "tmpfs-quota"
    if not (full and sandbox["limits"].startswith("cgroup")):
        harness.stop()
        pytest.skip(f"the full sandbox needs root, bwrap and writable cgroups; here: {sandbox}")
    yield harness
    harness.stop()


def run(harness: Harness, identifier: str, code: str, timeout_s: int = 60) -> dict[str, object]:
    body = harness.execute(identifier, code, timeoutInSeconds=timeout_s, wait=timeout_s + 30).json()
    assert "result" in body, body
    return body


def value(harness: Harness, identifier: str, code: str, timeout_s: int = 60) -> object:
    """The JSON a piece of code prints on its last line."""
    body = run(harness, identifier, code, timeout_s)
    assert body["status"] == "Succeeded", body["result"]["stderr"]
    return json.loads(body["result"]["stdout"].strip().splitlines()[-1])


def session_of(harness: Harness, identifier: str) -> Session:
    session = harness.executor.find_session(identifier)
    assert session is not None
    return session


def delete(harness: Harness, identifier: str) -> None:
    response = harness.request("DELETE", f"/session?api-version={API}&identifier={identifier}", headers=AUTH)
    assert response.status_code == 204


@contextlib.contextmanager
def sessions_at_full_weight(root: CgroupRoot) -> Iterator[None]:
    """The sessions' CPU weight at its maximum for a while. At their usual low weight a busy machine (a
    process spinning on each core) keeps a session below its quota, so it is never throttled by it."""
    weight = root.folders[1] / "cpu.shares" if root.version == 1 else root.folders[0] / "cpu.weight"
    usual = weight.read_text().strip()
    weight.write_text("262144" if root.version == 1 else "10000")
    try:
        yield
    finally:
        weight.write_text(usual)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


LIST_FDS = (
    "import os, json\nfds = {}\n"
    "for fd in os.listdir('/proc/self/fd'):\n"
    "    try:\n        fds[fd] = os.readlink('/proc/self/fd/' + fd)\n"
    "    except OSError:\n        pass\n"
    "print(json.dumps(fds))"
)


def test_code_inherits_no_socket_even_when_the_server_leaves_one_inheritable(tmp_path: Path) -> None:
    """The server's listening socket is inheritable (as FLLM_FD is): the sandbox still gets only its pipes."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.set_inheritable(True)
    executor = Executor(make_config(tmp_path, pool_size=0), "hostile")
    loop = LoopThread()

    async def scenario() -> tuple[dict[str, str], str]:
        await executor.start()
        try:
            record = await executor.run(executor.open_session("fds"), ExecutionSpec(LIST_FDS, 20, 10_000), "x")
            return json.loads(record.outcome.stdout), executor.sandbox["isolation"]
        finally:
            await executor.stop()

    try:
        fds, isolation = loop.run(scenario())
    finally:
        loop.close()
        listener.close()
    if isolation != "bwrap":
        pytest.skip("no bwrap here")
    assert fds and not [target for target in fds.values() if target.startswith("socket:")], fds
    others = {fd: target for fd, target in fds.items() if int(fd) > 2 and not target.startswith("pipe:")}
    assert others == {}, others  # 0/1/2 are /dev/null, the protocol is two pipes


def test_project_tree_and_host_files_are_not_readable(hostile: Harness) -> None:
    code = (
        "import os, json\nout = {}\n"
        f"for path in ({str(REPO / 'services' / 'code_execution' / 'executor.py')!r}, {str(REPO / 'pyproject.toml')!r},"
        " '/etc/shadow', '/etc/passwd', '/root/.bash_history', '/proc/1/environ'):\n"
        "    try:\n        open(path, 'rb').read(1)\n        out[path] = 'read'\n"
        "    except OSError as e:\n        out[path] = type(e).__name__\n"
        f"try:\n    out['repo'] = sorted(os.listdir({str(REPO)!r}))\nexcept OSError as e:\n"
        "    out['repo'] = type(e).__name__\n"
        "out['root'] = sorted(os.listdir('/'))\nprint(json.dumps(out))"
    )
    out = value(hostile, new_id(), code)
    assert isinstance(out, dict)
    assert "read" not in [out[key] for key in out if key.startswith("/")], out
    assert out["repo"] in ("FileNotFoundError", [".venv"]), out["repo"]  # at most the venv's site-packages
    assert not {"etc", "home", "srv", "opt"} & set(out["root"]), out["root"]


def test_proc_shows_only_the_sessions_processes(hostile: Harness) -> None:
    code = (
        "import os, json\npids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        "print(json.dumps([pids, os.getpid(), os.getuid()]))"
    )
    pids, own, uid = value(hostile, new_id(), code)  # type: ignore[misc]
    assert pids == [1, own] and own == 2  # bwrap's init and the interpreter: not the server's 100+ pids
    assert uid != 0 and uid != os.getuid()


def test_no_network_not_even_loopback_to_the_host(hostile: Harness) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        code = (
            "import socket, json\nout = []\n"
            "for host in ('127.0.0.1', '10.0.0.1'):\n"
            f"    try:\n        socket.create_connection((host, {port}), timeout=1).close()\n"
            "        out.append('connected')\n"
            "    except OSError as e:\n        out.append(type(e).__name__)\n"
            "print(json.dumps(out))"
        )
        out = value(hostile, new_id(), code)
    finally:
        listener.close()
    assert out == ["ConnectionRefusedError", "OSError"], out  # its own empty loopback; no route out


def test_a_setsid_daemon_counts_against_the_session_and_dies_with_it(hostile: Harness) -> None:
    identifier, neighbour = new_id(), new_id()
    code = (
        "import os\npid = os.fork()\n"
        "if pid == 0:\n    os.setsid()\n    while True:\n        pass\n"
        "print(pid)"
    )
    assert run(hostile, identifier, code)["status"] == "Succeeded"
    session = session_of(hostile, identifier)
    cgroup = session.slot.cgroup
    assert cgroup is not None
    members = cgroup.pids()
    daemons = [pid for pid in members if os.stat(f"/proc/{pid}").st_uid == session.uid]
    assert len(daemons) == 2  # the interpreter and the daemon, both in the session's cgroup
    assert hostile.executor.sessions.cgroups is not None
    with sessions_at_full_weight(hostile.executor.sessions.cgroups):
        used, throttled = cgroup.cpu_seconds(), cgroup.throttled()
        wait_until(lambda: cgroup.throttled() > throttled + 2, "the daemon to be throttled to the session's 0.5 core")
    later = cgroup.cpu_seconds()
    assert used is None or later is None or later > used  # the daemon's CPU is the session's
    assert value(hostile, neighbour, "print(1)") == 1  # another session still answers
    delete(hostile, identifier)
    wait_until(lambda: not any(alive(pid) for pid in members), "the session's processes to end", 5.0)
    delete(hostile, neighbour)


def test_a_fork_bomb_hits_the_process_limit(hostile: Harness) -> None:
    identifier = new_id()
    count, outcome = value(hostile, identifier, FORK_BOMB)  # type: ignore[misc]
    assert outcome == "BlockingIOError" and count < LIMITS.processes
    assert value(hostile, identifier, "print(2)") == 2  # the session survives its bomb
    delete(hostile, identifier)


def executions_of(exporter: InMemorySpanExporter, session: Session) -> list[ReadableSpan]:
    return [span for span in spans_named(exporter, c.SPAN_CODE_EXECUTE)
            if span.attributes and span.attributes[c.ATTR_CODE_SESSION_ID_HASH] == session.id_hash]


def test_a_memory_bomb_of_children_stays_within_the_session_limit(
    hostile: Harness, span_exporter: InMemorySpanExporter
) -> None:
    identifier = new_id()
    body = run(hostile, identifier, memory_bomb(children=3, megabytes=900))
    session = session_of(hostile, identifier)
    peak = session.slot.cgroup.peak_memory() if session.slot.cgroup else None
    if body["status"] == "Succeeded":
        codes = json.loads(body["result"]["stdout"].strip())
        assert codes.count(0) < 3 and -9 in codes, codes  # children past the limit were OOM-killed
    else:  # the OOM killer took the interpreter itself, and the answer says so
        assert body["error"]["error"]["code"] == "CodeExecutionOutOfMemory", body["error"]
        assert "memory limit (1024 MiB)" in body["result"]["stderr"], body["result"]["stderr"]
    assert peak is None or peak <= LIMITS.memory_bytes
    # The execution's span counts the kills at the limit and says what the session used.
    (span,) = executions_of(span_exporter, session)
    attributes = span.attributes or {}
    assert attributes[c.ATTR_CODE_OOM_KILLS] >= 1, dict(attributes)
    assert attributes[c.ATTR_CODE_MEMORY_LIMIT] == LIMITS.memory_bytes
    assert LIMITS.memory_bytes // 2 < attributes[c.ATTR_CODE_MEMORY_PEAK] <= LIMITS.memory_bytes
    assert attributes[c.ATTR_CODE_CPU_TIME] > 0
    assert value(hostile, identifier, "print(3)") == 3
    (_, after) = executions_of(span_exporter, session)
    assert (after.attributes or {})[c.ATTR_CODE_OOM_KILLS] == 0  # counted per execution
    delete(hostile, identifier)


def test_an_interpreter_killed_at_the_memory_limit_says_so(
    hostile: Harness, span_exporter: InMemorySpanExporter
) -> None:
    identifier = new_id()
    run(hostile, identifier, "open('/mnt/data/kept.txt', 'w').write('kept')")
    # 700 MiB in the interpreter (within its own address space limit), then a process of 500 MiB beside it:
    # together past the session's 1 GiB, and the kernel kills the biggest, the interpreter.
    grow = (
        "import subprocess, sys, time\nheld = bytearray(b'x') * (700 * 1024 * 1024)\n"
        "subprocess.Popen([sys.executable, '-c', 'b = bytearray(bytes(1)) * (500 * 1024 * 1024); "
        "import time; time.sleep(60)'])\ntime.sleep(30)"
    )
    body = run(hostile, identifier, grow)
    assert body["status"] == "Failed" and body["error"]["error"]["code"] == "CodeExecutionOutOfMemory", body
    stderr = body["result"]["stderr"]
    assert "MemoryError: the interpreter was killed at the session's memory limit (1024 MiB)" in stderr, stderr
    span = executions_of(span_exporter, session_of(hostile, identifier))[-1]
    assert (span.attributes or {})[c.ATTR_CODE_OOM_KILLS] >= 1
    assert [event.attributes["exception.type"] for event in span.events if event.attributes] == ["MemoryError"]
    assert value(hostile, identifier, "print(len(open('/mnt/data/kept.txt').read()))") == 4
    delete(hostile, identifier)


# Calls an unprivileged process could still make, each answered by the kernel itself without the filter
# (a new user namespace, a keyring id, EFAULT for a missing argument, ...): the filter's EPERM is its own.
SYSCALL_PROBES = (
    "import ctypes, errno, json, os, subprocess, threading\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "def call(number, *args):\n"
    "    done = libc.syscall(number, *[ctypes.c_long(a) for a in args])\n"
    "    return errno.errorcode.get(ctypes.get_errno(), 'ok') if done < 0 else 'ok'\n"
    "probes = {'unshare(CLONE_NEWUSER)': call(272, 0x10000000), 'keyctl': call(250, 0, -3, 0),\n"
    "          'bpf': call(321, 0, 0, 0), 'perf_event_open': call(298, 0, 0, -1, -1, 0),\n"
    "          'userfaultfd': call(323, 0), 'io_uring_setup': call(425, 1, 0), 'ptrace': call(101, 0, 0, 0, 0),\n"
    "          'add_key': call(248, 0, 0, 0, 0, -3), 'personality(ADDR_NO_RANDOMIZE)': call(135, 0x0040000),\n"
    "          'clone(CLONE_NEWNET)': call(56, 0x40000000 | 17, 0, 0, 0, 0), 'clone3': call(435, 0, 0)}\n"
    "worker = threading.Thread(target=lambda: None)\nworker.start()\nworker.join()\n"
    "probes['a thread, a subprocess'] = subprocess.run(['/bin/echo', 'ok'], capture_output=True, text=True).stdout\n"
    "print(json.dumps(probes))"
)


def test_the_system_call_filter_refuses_the_kernels_attack_surface(hostile: Harness) -> None:
    if not hostile.executor.sandbox["syscalls"].startswith("seccomp"):
        pytest.skip(f"no system call filter here: {hostile.executor.sandbox['syscalls']}")
    probes = value(hostile, new_id(), SYSCALL_PROBES)
    assert isinstance(probes, dict)
    assert probes.pop("clone3") == "ENOSYS"  # the C library then falls back to clone, whose flags are checked
    assert probes.pop("a thread, a subprocess") == "ok\n"  # what code needs still works
    assert probes == dict.fromkeys(probes, "EPERM"), probes


def test_filling_mnt_data_fails_with_enospc_and_spares_the_disk(hostile: Harness) -> None:
    identifier = new_id()
    disk = hostile.executor.config.sessions_dir
    before = os.statvfs(disk)
    written, error = value(hostile, identifier, DISK_BOMB)  # type: ignore[misc]
    after = os.statvfs(disk)
    assert error in (errno.ENOSPC, errno.EDQUOT) and written <= LIMITS.disk_bytes
    grown = (before.f_bfree - after.f_bfree) * after.f_frsize
    assert grown < 50 * MIB, grown
    delete(hostile, identifier)


def test_sessions_cannot_read_each_others_files(hostile: Harness) -> None:
    owner, thief = new_id(), new_id()
    marker = uuid.uuid4().hex
    assert run(hostile, owner, f"open('/mnt/data/secret.txt', 'w').write({marker!r})\n"
                               f"open('/tmp/secret.txt', 'w').write({marker!r})")["status"] == "Succeeded"
    session = session_of(hostile, owner)
    code = (
        "import os, json, glob\nout = {}\n"
        f"for path in ({str(session.data_dir / 'secret.txt')!r}, {str(session.folder)!r}, '/tmp/secret.txt',"
        " '/mnt/data/secret.txt'):\n"
        "    try:\n        out[path] = open(path).read()\n"
        "    except OSError as e:\n        out[path] = type(e).__name__\n"
        "out['found'] = [p for p in glob.glob('/proc/*/root/mnt/data/*')]\n"
        "print(json.dumps(out))"
    )
    out = value(hostile, thief, code)
    assert marker not in json.dumps(out), out
    delete(hostile, owner)
    delete(hostile, thief)


def test_a_timeout_ends_everything_the_execution_started(hostile: Harness) -> None:
    identifier = new_id()
    code = (
        "import os, subprocess\n"
        "subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
        "if os.fork() == 0:\n    os.setsid()\n    while True:\n        pass\n"
        "while True:\n    pass\n"
    )
    body = run(hostile, identifier, code, timeout_s=1)
    assert body["status"] == "Failed" and body["error"]["error"]["code"] == "CodeExecutionTimedOut"
    session = session_of(hostile, identifier)
    assert session.slot.cgroup is not None
    wait_until(lambda: not session.slot.cgroup.pids(), "the session's cgroup to empty", 5.0)
    assert value(hostile, identifier, "print(4)") == 4  # a new interpreter in the same session
    delete(hostile, identifier)
