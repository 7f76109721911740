"""Attacks the hostile-code suites send as a session's code, shared by the executor's and the chain's suite."""

from __future__ import annotations

# Forks until the process limit stops it; prints [children forked, what stopped it].
FORK_BOMB = (
    "import os, json, signal\nchildren, outcome = [], 'unlimited'\n"
    "try:\n    for _ in range(500):\n        pid = os.fork()\n"
    "        if pid == 0:\n            signal.pause()\n            os._exit(0)\n"
    "        children.append(pid)\n"
    "except OSError as e:\n    outcome = type(e).__name__\n"
    "for pid in children:\n    os.kill(pid, 9)\n    os.waitpid(pid, 0)\n"
    "print(json.dumps([len(children), outcome]))"
)


# Writes 6 x 100 MB under /mnt/data until the disk quota stops it; prints [bytes written, errno].
DISK_BOMB = (
    "import json\nwritten, error = 0, None\nchunk = b'x' * (8 * 1024 * 1024)\n"
    "try:\n    for n in range(6):\n        with open(f'/mnt/data/big{n}.bin', 'wb') as f:\n"
    "            for _ in range(100 * 1024 * 1024 // len(chunk)):\n"
    "                f.write(chunk)\n                written += len(chunk)\n"
    "except OSError as e:\n    error = e.errno\n"
    "print(json.dumps([written, error]))"
)


def memory_bomb(children: int, megabytes: int) -> str:
    """``children`` processes each filling ``megabytes`` and holding it until every one of them holds its
    block or has died; prints their exit codes (-9: OOM-killed, 1: the allocation raised).

    The demands add up by construction, not by timing: a child that let go of its block as soon as it was
    filled could end before a slower sibling got far, and the session would never reach its limit.
    """
    return (
        "import os, json\nchildren, held = [], []\nrelease_r, release_w = os.pipe()\n"
        f"for _ in range({children}):\n    held_r, held_w = os.pipe()\n    pid = os.fork()\n"
        "    if pid == 0:\n        try:\n            os.close(release_w)\n"
        f"            block = bytearray(b'x') * ({megabytes} * 1024 * 1024)\n"
        "            os.write(held_w, b'1')\n            os.read(release_r, 1)\n"
        "        except BaseException:\n            os._exit(1)\n        os._exit(0)\n"
        "    os.close(held_w)\n    children.append(pid)\n    held.append(held_r)\n"
        "for fd in held:\n    os.read(fd, 1)  # b'1': the child holds its block; b'': it died\n"
        "os.close(release_w)\n"
        "print(json.dumps([os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]))"
    )
