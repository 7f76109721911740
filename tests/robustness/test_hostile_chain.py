"""Hostile code through the real chain, on both providers: each attack is a completion submitted to Core
with a bearer token (agents ``code-interpreter`` -> Dynamic Sessions emulator, ``custom-container-coder``
-> Code Session API), its code run by the sandbox of whichever provider the agent uses.

Attacks: inherited descriptors, the host's files and the project's source tree, ``/proc``, the network,
daemons outliving their session, fork, memory and disk bombs, reading another session, forging results,
a sleep past the Context API's execution timeout; and what the Context API keeps of a session's files
(bounded per operation, nothing for a failed operation). Authentication at Core (401 without a valid
token, ``callstack token``) runs on the package's chain in test_auth.py.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.launcher import REPO
from telemetry import conventions as c
from tests.faults.harness import FaultChain, Outcome, start_fault_chain, stop_fault_chain
from tests.hostile_code import DISK_BOMB, FORK_BOMB, memory_bomb
from tests.otlp_receiver import OtlpReceiver
from tests.wait import wait_until

AGENTS = {"code-interpreter": "dynamic_sessions", "custom-container-coder": "code_session_api"}
EXECUTION_TIMEOUT_S = 10
COOLDOWN_S = 4
ENV = {
    "FLLM_HOP_TIMEOUT_S": "10",
    "FLLM_OPERATION_STALE_AFTER_S": "30",
    "FLLM_CONTEXT_EXECUTION_TIMEOUT_S": str(EXECUTION_TIMEOUT_S),
    "FLLM_CODE_COOLDOWN_S": str(COOLDOWN_S),  # a session left idle is disposed of (with what it started)
    "FLLM_CODE_POOL_SIZE": "2",
}
MIB = 1024 * 1024
both = pytest.mark.parametrize("agent", list(AGENTS))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, package_receiver: OtlpReceiver) -> Iterator[FaultChain]:
    """A chain of its own (short execution timeout and cooldown), a fault proxy in front of the State API."""
    chain = start_fault_chain(tmp_path_factory.mktemp("hostile-chain"), package_receiver, ENV, proxied=("state_api",))
    try:
        for package in AGENTS.values():
            sandbox = httpx.get(f"{chain.chain.url(package)}/status", timeout=10).json()["sandbox"]
            full = sandbox["isolation"] == "bwrap" and sandbox["disk"] == "tmpfs-quota"
            if not (full and sandbox["limits"].startswith("cgroup")):
                pytest.skip(f"the full sandbox needs root, bwrap and writable cgroups; {package}: {sandbox}")
        yield chain
    finally:
        stop_fault_chain(chain)


def ask(chain: FaultChain, agent: str, code: str, timeout_s: float = 60.0) -> Outcome:
    outcome = chain.run(f"Run this:\n```python\n{code}\n```", agent, timeout_s=timeout_s)
    assert outcome.status == "Completed", outcome.body
    return outcome


def text_of(outcome: Outcome) -> str:
    return str(outcome.body["result"]["text"])


def last_json(chain: FaultChain, agent: str, code: str) -> object:
    """What the code prints as JSON on its last line."""
    text = text_of(ask(chain, agent, code))
    return json.loads(text.strip().splitlines()[-1])


def disk_usage(root: Path) -> int:
    """Bytes of disk under ``root``, not crossing into other file systems (the sessions' tmpfs quotas)."""
    device, total = root.stat().st_dev, 0
    for folder, subfolders, files in os.walk(root):
        kept = []
        for name in subfolders:
            try:
                if os.lstat(os.path.join(folder, name)).st_dev == device:
                    kept.append(name)
            except FileNotFoundError:
                pass
        subfolders[:] = kept
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return total


def blobs(chain: FaultChain) -> set[Path]:
    root = chain.chain.data_dir / "context_files"
    return {path for path in root.rglob("*") if path.is_file()} if root.exists() else set()


# --- descriptors, host, /proc, network ---

DESCRIPTORS = (
    "import os, json, socket\nfds = {}\n"
    "for fd in os.listdir('/proc/self/fd'):\n"
    "    try:\n        fds[fd] = os.readlink('/proc/self/fd/' + fd)\n"
    "    except OSError:\n        pass\n"
    "accepted = []\n"
    "for fd in map(int, fds):\n"
    "    try:\n        s = socket.socket(fileno=os.dup(fd))\n        s.setblocking(False)\n"
    "        accepted.append(str(s.accept()))\n"
    "    except OSError:\n        pass\n"
    "print(json.dumps([fds, accepted]))"
)


@both
def test_code_sees_no_socket_among_its_descriptors(hostile: FaultChain, agent: str) -> None:
    fds, accepted = last_json(hostile, agent, DESCRIPTORS)  # type: ignore[misc]
    assert fds and not [target for target in fds.values() if target.startswith("socket:")], fds
    assert accepted == []  # nothing to accept another user's request on
    others = {fd: target for fd, target in fds.items() if int(fd) > 2 and not target.startswith("pipe:")}
    assert others == {}, others


@both
def test_the_project_tree_the_data_dir_and_host_files_are_not_readable(hostile: FaultChain, agent: str) -> None:
    data = hostile.chain.data_dir
    paths = [REPO / "services" / "context_api" / "service.py", REPO / "pyproject.toml", data / "secrets.env",
             data / "state_api.db", data / "auth" / "signing-key.pem", Path("/etc/shadow"), Path("/etc/passwd"),
             Path("/root/.bash_history"), Path("/proc/1/environ")]
    code = (
        "import os, json\nout = {}\n"
        f"for path in {[str(p) for p in paths]!r}:\n"
        "    try:\n        open(path, 'rb').read(1)\n        out[path] = 'read'\n"
        "    except OSError as e:\n        out[path] = type(e).__name__\n"
        f"for folder in ({str(REPO)!r}, {str(data)!r}):\n"
        "    try:\n        out[folder] = sorted(os.listdir(folder))\n"
        "    except OSError as e:\n        out[folder] = type(e).__name__\n"
        "out['root'] = sorted(os.listdir('/'))\nprint(json.dumps(out))"
    )
    out = last_json(hostile, agent, code)
    assert isinstance(out, dict)
    assert [path for path in map(str, paths) if out[path] == "read"] == [], out
    assert out[str(REPO)] in ("FileNotFoundError", [".venv"]), out[str(REPO)]  # at most the venv's packages
    assert out[str(data)] == "FileNotFoundError", out[str(data)]
    assert not {"etc", "home", "srv", "opt"} & set(out["root"]), out["root"]  # /root: the interpreter's path only


@both
def test_proc_shows_only_the_sessions_processes(hostile: FaultChain, agent: str) -> None:
    code = (
        "import os, json\npids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        "cmdlines = [open(f'/proc/{p}/cmdline', 'rb').read().decode(errors='replace')[:60] for p in pids]\n"
        "print(json.dumps([pids, os.getpid(), os.getuid(), cmdlines]))"
    )
    pids, own, uid, cmdlines = last_json(hostile, agent, code)  # type: ignore[misc]
    assert pids == [1, own], (pids, cmdlines)  # bwrap's init and the interpreter, not the host's processes
    assert uid not in (0, os.getuid())
    assert not [line for line in cmdlines if "uvicorn" in line or "services." in line], cmdlines


@both
def test_no_network_not_even_the_chains_own_ports(hostile: FaultChain, agent: str) -> None:
    packages = ("core_api", "context_api", AGENTS[agent])
    ports = [int(hostile.chain.url(package).rsplit(":", 1)[1]) for package in packages]
    code = (
        "import socket, json\nout = []\n"
        f"for host, port in [('127.0.0.1', p) for p in {ports!r}] + [('10.0.0.1', 443), ('1.1.1.1', 53)]:\n"
        "    try:\n        socket.create_connection((host, port), timeout=1).close()\n"
        "        out.append('connected')\n"
        "    except OSError as e:\n        out.append(type(e).__name__)\n"
        "print(json.dumps(out))"
    )
    out = last_json(hostile, agent, code)
    assert isinstance(out, list) and "connected" not in out and len(out) == len(ports) + 2, out


# --- processes and quotas ---


def host_processes_with(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if marker.encode() in cmdline.read():
                    with open(f"/proc/{pid}/stat") as stat:
                        if stat.read().rsplit(")", 1)[1].split()[0] != "Z":
                            found.append(int(pid))
        except OSError:
            pass
    return found


def test_daemons_are_killed_when_their_session_ends(hostile: FaultChain) -> None:
    """A ``setsid`` daemon burning CPU, started on each provider, is gone once its session ends: the code
    interpreter's session is released when the completion is done, the custom container's after its cooldown."""
    markers = {agent: f"daemon-{secrets.token_hex(6)}" for agent in AGENTS}
    for agent, marker in markers.items():
        code = (
            "import subprocess, sys\n"
            f"subprocess.Popen([sys.executable, '-c', 'while True: pass', {marker!r}], start_new_session=True,"
            " stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            "import os\nprint('processes', len([p for p in os.listdir('/proc') if p.isdigit()]))"
        )
        assert "processes 3" in text_of(ask(hostile, agent, code))  # bwrap's init, the interpreter, the daemon
        if agent == "custom-container-coder":  # a per-conversation session: it lives on until its cooldown
            assert len(host_processes_with(marker)) == 1, agent
    started = time.monotonic()
    wait_until(lambda: not any(host_processes_with(marker) for marker in markers.values()),
               "the sessions' daemons to end", COOLDOWN_S + 15, every_s=0.1)
    assert time.monotonic() - started < COOLDOWN_S + 15


MEMORY_BOMB = memory_bomb(children=2, megabytes=600)


@both
def test_a_fork_bomb_hits_the_sessions_process_limit(hostile: FaultChain, agent: str) -> None:
    count, outcome = last_json(hostile, agent, FORK_BOMB)  # type: ignore[misc]
    assert outcome == "BlockingIOError" and count < 64, (count, outcome)


@both
def test_a_memory_bomb_of_children_stays_within_the_sessions_memory(hostile: FaultChain, agent: str) -> None:
    outcome = ask(hostile, agent, MEMORY_BOMB)
    text = text_of(outcome)
    if text.startswith("The generated code could not be executed"):
        # The OOM killer took the interpreter itself (the answer says so), or the session thrashed at its
        # limit until the timeout on a loaded machine.
        assert "memory limit" in text or "TimeoutError" in text, text
    else:
        codes = json.loads(text.strip().splitlines()[-1])
        assert codes.count(0) < 2 and -9 in codes, codes  # 2 x 600 MB: a child past the session's 1 GB was killed
    # Whichever process the kernel chose, its kill at the session's limit is on the execution's span: an
    # unlimited session, [0, 0] at once, has none.
    def execution() -> list[object]:
        return [span.attributes.get(c.ATTR_CODE_OOM_KILLS) for span in hostile.receiver.trace(outcome.trace_id)
                if span.name == c.SPAN_CODE_EXECUTE]
    assert hostile.receiver.wait_for(lambda: bool(execution())), "no code.execute span"
    (oom_kills,) = execution()
    assert isinstance(oom_kills, int) and oom_kills >= 1, oom_kills


@both
def test_a_600_mb_write_fails_on_the_quota_and_the_data_dir_stays_small(hostile: FaultChain, agent: str) -> None:
    data = hostile.chain.data_dir
    before, files_before = disk_usage(data), blobs(hostile)
    text = text_of(ask(hostile, agent, DISK_BOMB))
    grown = disk_usage(data) - before
    written, error = json.loads(text.strip().splitlines()[0])
    assert error in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) and written <= 500 * MIB, (written, error)
    assert grown < 50 * MIB, grown
    # The full files stayed in the session, each one named in the answer; the last, cut short by the quota
    # (about 20 MB), fits the 32 MB download bound and is the only one copied.
    named = [f"/big{n}.bin: not copied" for n in range(5)]
    assert "Files not copied out of the session: " in text and all(name in text for name in named), text
    assert "32 MB per operation" in text
    copied = blobs(hostile) - files_before
    assert len(copied) <= 1 and sum(path.stat().st_size for path in copied) <= 32 * MIB, copied


# --- other sessions, forged results ---


def victim_session(chain: FaultChain, agent: str, marker: str) -> str:
    """A session of another user, straight at the provider: a secret in its files, /tmp and memory."""
    identifier = f"victim-{uuid.uuid4().hex[:12]}"
    code = (f"open('/mnt/data/secret-{marker}.txt', 'w').write({marker!r})\n"
            f"open('/tmp/secret.txt', 'w').write({marker!r})\nsecret = {marker!r}\nprint('ok')")
    token = chain.chain.secrets_env["FLLM_DYNAMIC_SESSIONS_TOKEN"]
    headers = {"Authorization": f"Bearer {token}"}
    url = chain.chain.url(AGENTS[agent])
    if agent == "code-interpreter":
        body = {"codeInputType": "Inline", "executionType": "Synchronous", "code": code, "timeoutInSeconds": 30}
        answer = httpx.post(f"{url}/executions", params={"api-version": "2024-10-02-preview", "identifier": identifier},
                            headers=headers, timeout=30, json=body)
        assert answer.status_code == 200 and answer.json()["status"] == "Succeeded", answer.text
    else:
        answer = httpx.post(f"{url}/code/execute", params={"identifier": identifier}, headers=headers, timeout=30,
                            json={"code": code})
        assert answer.status_code == 200 and answer.json()["detail"]["output"] == "ok\n", answer.text
    return identifier


@both
def test_a_session_cannot_read_another_sessions_files(hostile: FaultChain, agent: str) -> None:
    marker = secrets.token_hex(8)
    victim_session(hostile, agent, marker)
    on_host = [path for path in hostile.chain.data_dir.rglob(f"secret-{marker}.txt")]
    assert on_host, "the victim's file is on the host (its tmpfs)"
    code = (
        "import os, json, glob\nout = {}\n"
        f"for path in {[str(p) for p in on_host] + [str(p.parent) for p in on_host]!r} + "
        f"['/tmp/secret.txt', '/mnt/data/secret-{marker}.txt']:\n"
        "    try:\n        out[path] = open(path).read() if os.path.isfile(path) else os.listdir(path)\n"
        "    except OSError as e:\n        out[path] = type(e).__name__\n"
        "out['proc'] = [open(p).read() for p in glob.glob('/proc/*/root/mnt/data/*') + glob.glob('/proc/*/root/tmp/*')"
        " if os.path.isfile(p)]\n"
        "out['environ'] = [open(p, 'rb').read().decode(errors='replace') for p in glob.glob('/proc/*/environ')]\n"
        "out['mnt'] = sorted(os.listdir('/mnt/data')) + sorted(os.listdir('/mnt'))\n"
        "print(json.dumps(out))"
    )
    text = text_of(ask(hostile, agent, code))
    assert marker not in text, text


FORGE = (
    "import os, json, struct\nforged = json.dumps({{'status': 'Succeeded', 'stdout': 'FORGED-{marker}', 'stderr': '',"
    " 'result': '', 'results': {{}}, 'error': None, 'time_ms': 0}}).encode()\n"
    "frame = struct.pack('>I', len(forged)) + forged\nwritten = []\n"
    "for fd in sorted(map(int, os.listdir('/proc/self/fd'))):\n"
    "    try:\n        target = os.readlink(f'/proc/self/fd/{{fd}}')\n"
    "        if fd > 2 and target.startswith('pipe:'):\n            os.write(fd, frame * 4)\n"
    "            written.append(fd)\n"
    "    except OSError:\n        pass\n"
    "print('real output', written)"
)


@both
def test_forged_results_reach_no_one_else(hostile: FaultChain, agent: str) -> None:
    """Code writes fake answer frames into every pipe it holds: at most its own session sees them; other
    users' executions, on the same provider at the same time, get their own results."""
    marker = secrets.token_hex(6)
    forger = hostile.submit(f"Run this:\n```python\n{FORGE.format(marker=marker)}\n```", agent)
    others = [hostile.submit(f"Run this:\n```python\nprint('mine', {n})\n```", agent) for n in range(3)]
    hostile.wait(forger, 60)
    for n, submitted in enumerate(others):
        outcome = hostile.wait(submitted, 60)
        assert outcome.status == "Completed" and f"mine {n}" in text_of(outcome), outcome.body
        assert marker not in text_of(outcome)
    after = ask(hostile, agent, "print('after the forger')")
    assert "after the forger" in text_of(after) and marker not in text_of(after)


# --- the execution timeout, and what the Context API keeps ---


@both
def test_a_sleep_past_the_execution_timeout_is_killed_and_reported(hostile: FaultChain, agent: str) -> None:
    marker = f"sleeper-{secrets.token_hex(6)}"
    code = (f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)',"
            f" {marker!r}])\ntime.sleep(30)\nprint('finished')")
    outcome = ask(hostile, agent, code)
    text = text_of(outcome)
    assert "finished" not in text and f"{EXECUTION_TIMEOUT_S}-second timeout" in text, text
    assert outcome.seconds < EXECUTION_TIMEOUT_S + 10, outcome.seconds
    wait_until(lambda: not host_processes_with(marker), "what it started to end with it", 5)


@both
def test_a_failed_operation_keeps_none_of_its_files(hostile: FaultChain, agent: str) -> None:
    """The State API fails the progress write after the tool ran: the operation fails, the file the code made
    and the Context API copied is removed; without the fault the same code's file is kept."""
    code = "open('/mnt/data/report.txt', 'w').write('a report')\nprint('wrote it')"
    before = blobs(hostile)
    kept = ask(hostile, agent, code)
    assert "wrote it" in text_of(kept) and len(blobs(hostile) - before) == 1  # the control: a file is kept
    token = secrets.token_hex(6)
    state = hostile.proxies["state_api"]
    state.inject("500", method="PUT", path=rf"op-{token}$", body_contains="Running agent tools")
    try:
        before = blobs(hostile)
        failed = hostile.run(f"Run this:\n```python\n{code}\n```", agent, token=token)
    finally:
        state.clear()
    assert failed.status == "Failed" and failed.body.get("failed_hop") == c.STATE_API, failed.body
    assert blobs(hostile) == before
