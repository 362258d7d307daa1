"""hostagent.netlink.check_netns on this machine's real namespace files: the host's own network
namespace (under any path) is refused, a container's passes. The plug sequence calls it before
anything is made (tests/unit/test_plug.py); the lab proves it on a running agent
(tests/integration/test_portsec.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from hostagent.errors import InvalidRequest, NotFound
from hostagent.netlink import check_netns


def test_the_agents_own_namespace_is_refused_by_any_of_its_paths() -> None:
    for path in ("/proc/self/ns/net", "/proc/thread-self/ns/net", f"/proc/{os.getpid()}/ns/net"):
        with pytest.raises(InvalidRequest, match="host's own"):
            check_netns(path)


def test_the_init_process_namespace_is_refused() -> None:
    # As root: "the host's own"; as another user /proc/1/ns is not even readable.
    with pytest.raises(InvalidRequest):
        check_netns("/proc/1/ns/net")


@pytest.mark.parametrize("path", ["/proc/self/ns/uts", "/etc/hostname", "/proc/self/ns"])
def test_what_is_not_a_network_namespace_is_refused(path: str) -> None:
    with pytest.raises(InvalidRequest, match="not a network namespace|Is a directory"):
        check_netns(path)


@pytest.mark.parametrize("netns", ["vx-no-such-netns", "/run/netns/vx-no-such-netns"])
def test_a_missing_namespace_is_not_found(netns: str) -> None:
    with pytest.raises(NotFound):
        check_netns(netns)


@pytest.fixture
def container_pid() -> Iterator[int]:
    """A process in a network namespace of its own (a container's, as CNI names it)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("making a network namespace needs root and unshare(1)")
    own = os.stat("/proc/self/ns/net").st_ino
    child = subprocess.Popen(["unshare", "--net", "sleep", "30"])
    try:
        deadline = time.monotonic() + 5
        while os.stat(f"/proc/{child.pid}/ns/net").st_ino == own:
            assert time.monotonic() < deadline, "unshare did not make a namespace"
            time.sleep(0.01)
        yield child.pid
    finally:
        child.kill()
        child.wait(5)


def test_a_containers_namespace_passes(container_pid: int) -> None:
    check_netns(f"/proc/{container_pid}/ns/net")
