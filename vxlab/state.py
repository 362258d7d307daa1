"""The lab's state file: what the lab made, recorded before it is made, under one file lock.

``<state_dir>/state.json`` (one state dir per lab prefix)::

    prefix, underlay    the lab this dir belongs to; another lab refuses to use it
    namespaces          network namespaces made (fabric, then hosts), deleted in reverse
    root_links          veths made in the root namespace, and each host's veth names
    hosts               {name: {index, underlay_ip, dir, pids: {daemon: pid},
                         agent_argv, controller_url, docker_sock}}
    containers          {name: {host, network, ip}}: namespaces made by ``Lab.run``

Every name is recorded *before* the thing is made, so ``down`` removes exactly what the lab
made (by name and by recorded pid, never by pattern), also after a failed ``up``. Every lab
command holds ``<state_dir>/.lock`` (flock) for its whole run, so two commands never
interleave; the state is written back when the command ends, also when it fails.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vxlab.errors import LabError


class StateFile:
    """The locked JSON state of the lab ``prefix`` on ``underlay`` in ``state_dir``."""

    def __init__(self, state_dir: str, prefix: str, underlay: str) -> None:
        self.dir = state_dir
        self.prefix = prefix
        self.underlay = underlay

    @property
    def path(self) -> str:
        return os.path.join(self.dir, "state.json")

    def exists(self) -> bool:
        """True once a lab command has run here (and ``remove`` has not)."""
        return os.path.exists(self.path)

    @contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        """Hold the lab lock; yield the state, saved on exit (also on error)."""
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, ".lock"), "w") as lockf:
            fcntl.flock(lockf, fcntl.LOCK_EX)
            state = self.load()
            try:
                yield state
            finally:
                self.save(state)

    def load(self) -> dict[str, Any]:
        """The state (an empty one if there is no file); LabError if it is another lab's."""
        try:
            with open(self.path) as f:
                state = json.load(f)
        except FileNotFoundError:
            state = {}
        state.setdefault("prefix", self.prefix)
        state.setdefault("underlay", self.underlay)
        state.setdefault("namespaces", [])
        state.setdefault("root_links", [])
        state.setdefault("hosts", {})
        state.setdefault("containers", {})
        if state["prefix"] != self.prefix or state["underlay"] != self.underlay:
            raise LabError(
                f"{self.dir} holds lab {state['prefix']!r} on {state['underlay']}; "
                f"run down there first"
            )
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` atomically (a temporary file renamed over the old one)."""
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f, indent=2, sort_keys=True)
        os.replace(tmp, self.path)

    def remove(self) -> None:
        """Delete the state file, the lock file and the dir if it is then empty."""
        for leftover in ("state.json", ".lock"):
            try:
                os.unlink(os.path.join(self.dir, leftover))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(self.dir)
        except OSError:
            pass


def record(state: dict[str, Any], key: str, name: str) -> None:
    """Add ``name`` to the list ``state[key]`` unless it is there."""
    if name not in state[key]:
        state[key].append(name)
