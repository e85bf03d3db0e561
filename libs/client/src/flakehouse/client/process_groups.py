"""Process groups of the local cluster's services (Linux). Each service starts in a session, hence
a process group, of its own, and its children (ingest's multiprocessing forkserver, its parse
workers, resource_tracker) stay in that group: stopping or reaping the group stops them all,
also when the service itself was killed and left them behind."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

PROC = Path("/proc")


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command: state, ppid, pgrp, ...; [] if gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return []
    # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    return stat[stat.rfind(")") + 2 :].split()


def running(pid: int) -> bool:
    """Whether the process exists and is not a zombie (killed, waiting to be reaped)."""
    fields = _stat(pid)
    return bool(fields) and fields[0] != "Z"


def members(pgid: int) -> list[int]:
    """The running processes of a process group (empty once they are all gone)."""
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> int:
    """Signals every process left in the group; returns how many there were."""
    left = members(pgid)
    if left:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return 0
    return len(left)


def wait_group_gone(pgid: int, timeout_s: float) -> bool:
    """True once no process of the group is left, False after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
