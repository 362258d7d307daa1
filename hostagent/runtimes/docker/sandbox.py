"""Which containers run in a Docker sandbox (a network namespace), read from ``/proc``.

``docker network connect`` of a running container tells the driver nothing about the
container: the engine's listing at ``RequestAddress`` does not name the network yet (the
engine records it only after the connect), and ``GET /containers/{id}/json`` would wait on
the container's lock, which the engine holds for the whole connect. ``Join`` does carry the
sandbox key, the path of the container's network namespace: the processes in that namespace
are the container's, and each one's cgroup path names its container id. Nothing of the
engine is locked; a sandbox with no process yet (a container being created) names none.
"""

from __future__ import annotations

import os
import re

CONTAINER_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")


def container_ids(netns_path: str, proc: str = "/proc") -> set[str]:
    """The 64-hex ids in the cgroup paths of the processes in the network namespace at
    ``netns_path`` (a bind mount of one, as Docker's sandbox keys are); empty when no
    process is in it or the path is not there."""
    try:
        inode = os.stat(netns_path).st_ino
    except OSError:
        return set()
    want = f"net:[{inode}]"
    found: set[str] = set()
    with os.scandir(proc) as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                if os.readlink(f"{proc}/{entry.name}/ns/net") != want:
                    continue
                with open(f"{proc}/{entry.name}/cgroup", encoding="utf-8") as f:
                    found.update(CONTAINER_ID.findall(f.read()))
            except OSError:  # the process ended meanwhile, or is not ours to read
                continue
    return found
