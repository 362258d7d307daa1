"""Processes of the lab: commands run to completion, daemons started, pid files, stopping, reaping.

The lab stops only what it started, by recorded pid, never by name pattern, and only while the
pid's command line still contains a string that only our process has (the host's directory,
the agent's socket): a pid reused by some other process is left alone. Children started by
this Python process are kept until they exit, so that they can be reaped and do not linger as
zombies that look alive in ``/proc``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence

from vxlab.errors import LabError

_children: dict[int, subprocess.Popen[bytes]] = {}


def run(argv: Sequence[str], env: dict[str, str] | None = None, check: bool = True) -> str:
    """Run ``argv`` to completion and return its stdout; LabError if it fails and ``check``."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, env=env, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"{' '.join(argv)}: {exc}") from exc
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def spawn(argv: Sequence[str], log_path: str | None = None) -> subprocess.Popen[bytes]:
    """Start a daemon in its own session (cwd ``/``), output appended to ``log_path`` (or
    discarded); it is kept for reaping."""
    if log_path is None:
        child = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True, cwd="/",
        )  # fmt: skip
    else:
        with open(log_path, "ab") as logf:
            child = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                start_new_session=True, cwd="/",
            )  # fmt: skip
    _children[child.pid] = child
    return child


def pid_alive(pid: int | None) -> bool:
    """True while ``pid`` exists and is neither a zombie nor dead."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def parent_pid(pid: int) -> int | None:
    """The parent of ``pid`` (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def cmdline(pid: int) -> list[str]:
    """The arguments ``pid`` was started with (empty if it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def owned(pid: int | None, marker: str) -> bool:
    """True when ``pid`` is alive and one of its arguments contains ``marker``."""
    return bool(pid) and pid_alive(pid) and any(marker in a for a in cmdline(pid or 0))


def read_pidfile(path: str) -> int | None:
    """The pid in ``path`` (None if the file is missing or holds no number)."""
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop_pid(pid: int, must_contain: str, timeout: float = 5.0) -> None:
    """SIGTERM (then SIGKILL after ``timeout``) ``pid`` if its command line still contains
    ``must_contain``; reap it if it is our child."""
    if not owned(pid, must_contain):
        reap(pid)
        return
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        reap(pid)
        time.sleep(0.05)
    if pid_alive(pid):
        _signal(pid, signal.SIGKILL)
        time.sleep(0.1)
    reap(pid)


def kill_pid(pid: int, must_contain: str) -> None:
    """SIGKILL ``pid`` as a crash would (if its command line contains ``must_contain``) and
    wait until it is gone."""
    if not owned(pid, must_contain):
        return
    _signal(pid, signal.SIGKILL)
    while pid_alive(pid):
        reap(pid)
        time.sleep(0.05)
    reap(pid)


def reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is an exited child of ours; else do nothing."""
    child = _children.pop(pid, None)
    if child is not None:
        if child.poll() is None:
            _children[pid] = child
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
