"""Trace points of the attach path: one timeline per attach, across processes.

Off unless the environment names a file in ``VXPLANE_TPOINTS`` when the process starts; then
``mark(event, key)`` appends ``<time.monotonic()> <pid> <event> <key>`` to it, one
``O_APPEND`` write a line, so the lines of several processes never mix. ``time.monotonic``
is one clock for every process of a machine: the bench, the agents and the controller
(which inherit the bench's environment in the lab) merge into one timeline per endpoint name,
``python -m bench.timeline FILE`` (docs/architecture.md, "The attach path, measured"). Off, a
mark costs a test of a module global.

The points, in path order: ``b_*`` the bench (``bench.run``), ``a_*`` the agent, ``c_*`` the
controller; ``bench/timeline.py`` says what each one is.
"""

from __future__ import annotations

import os
import time

PATH = os.environ.get("VXPLANE_TPOINTS") or None
ON = PATH is not None
_fd: int | None = None


def mark(event: str, key: str) -> None:
    """Record that ``event`` of the attach ``key`` (the endpoint's name) happens now."""
    global _fd
    if PATH is None:
        return
    now = time.monotonic()
    if _fd is None:
        _fd = os.open(PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(_fd, f"{now:.6f} {os.getpid()} {event} {key}\n".encode())
