"""hostagent.runtimes.docker.sandbox: the containers in a sandbox, read from a /proc tree
(here one made on disk: each pid's ns/net link and cgroup file as the kernel shows them)."""

from __future__ import annotations

import os
from pathlib import Path

from hostagent.runtimes.docker.sandbox import container_ids

A = "a" * 63 + "1"
B = "0123456789abcdef" * 4


def _proc(root: Path, pid: int, netns_inode: int, cgroup: str) -> None:
    d = root / str(pid)
    (d / "ns").mkdir(parents=True)
    os.symlink(f"net:[{netns_inode}]", d / "ns" / "net")
    (d / "cgroup").write_text(cgroup)


def test_the_ids_of_the_processes_in_the_sandbox_only(tmp_path: Path) -> None:
    sandbox = tmp_path / "netns-key"
    sandbox.write_text("")  # stands for the bind-mounted namespace: its inode is what counts
    ino = sandbox.stat().st_ino
    proc = tmp_path / "proc"
    _proc(proc, 10, ino, f"0::/system.slice/docker-{A}.scope\n")  # systemd cgroup driver
    _proc(proc, 11, ino, f"12:pids:/docker/{A}\n11:memory:/docker/{A}\n")  # cgroupfs, v1
    _proc(proc, 12, ino + 1, f"0::/docker/{B}\n")  # another namespace
    _proc(proc, 13, ino, "0::/user.slice/session-1.scope\n")  # no container id
    _proc(proc, 14, ino, f"0::/docker/{A}0\n")  # 65 hex digits: not an id
    (proc / "self").mkdir()
    (proc / "20").mkdir()  # a process that ended while the tree was read
    assert container_ids(str(sandbox), str(proc)) == {A}


def test_no_sandbox_no_ids(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    assert container_ids(str(tmp_path / "gone"), str(proc)) == set()
