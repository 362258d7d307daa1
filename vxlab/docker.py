"""Docker in the lab: one dockerd per emulated host, sharing a private mount namespace with
that host's agent so each engine finds its own agent at ``/run/docker/plugins/vxplane.sock``.

Per host (files under the host's lab dir, ``docker/``):

- a *mount holder*: ``unshare --mount`` running ``sleep infinity`` after bind-mounting the
  host's ``docker/plugins`` over ``/run/docker/plugins`` (the mount the path lives on is made
  private first, so nothing propagates back to the root namespace; ``/run/netns`` keeps its
  shared propagation, so namespaces made later stay visible). The agent and dockerd join it
  with ``nsenter --mount=/proc/<holder>/ns/mnt``; it outlives both, so either can restart.
- dockerd in the host's network namespace (``nsenter``, not ``ip netns exec``, which
  remounts /sys and hides the cgroup mounts) with its own data root, exec root, pid file,
  socket and an empty config file: ``--iptables=false --ip-masq=false --bridge=none
  --storage-driver=vfs --userland-proxy=false``.
- the image ``vxplane/busybox`` made with ``docker import`` from Debian's busybox-static
  (``/bin/busybox`` plus one symlink per applet); no registry is involved.

Stopping: remove every container through the engine, SIGTERM dockerd (it stops its own
containerd, unless dockerd was SIGKILLed once: then that containerd, and the shims and
containers it left, are stopped from their pid files), then the holder; all by recorded pid,
each checked against its command line.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from typing import Any

import httpx

from vxlab.errors import LabError
from vxlab.paths import HostPaths
from vxlab.proc import cmdline, owned, parent_pid, pid_alive, read_pidfile, spawn, stop_pid

IMAGE = "vxplane/busybox:latest"
PLUGIN_DIR = "/run/docker/plugins"
PLUGIN_SOCKET = f"{PLUGIN_DIR}/vxplane.sock"
BUSYBOX = "/bin/busybox"


def docker_cli() -> str:
    """The docker CLI: Debian's (same version as the engine) if installed, else PATH's."""
    return "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker"


def engine_paths(host_dir: str) -> dict[str, str]:
    """Where a host's engine keeps its files."""
    base = os.path.join(host_dir, "docker")
    return {
        "base": base,
        "data": os.path.join(base, "data"),
        "exec": os.path.join(base, "exec"),
        "plugins": os.path.join(base, "plugins"),
        "sock": os.path.join(base, "docker.sock"),
        "pidfile": os.path.join(base, "dockerd.pid"),
        "config": os.path.join(base, "daemon.json"),
        "log": os.path.join(base, "dockerd.log"),
    }


def engine(sock: str, timeout: float = 10.0) -> httpx.Client:
    """An httpx client for the engine API on ``sock``."""
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=sock), base_url="http://docker", timeout=timeout
    )


def engine_up(sock: str) -> bool:
    """True when the engine on ``sock`` answers ``/_ping``."""
    if not os.path.exists(sock):
        return False
    try:
        with engine(sock, timeout=2) as http:
            return http.get("/_ping").status_code == 200
    except httpx.HTTPError:
        return False


def start_holder(host_dir: str) -> subprocess.Popen[bytes]:
    """Start the mount holder of a host (see the module docstring); returns the child."""
    p = engine_paths(host_dir)
    os.makedirs(p["plugins"], exist_ok=True)
    os.makedirs(PLUGIN_DIR, exist_ok=True)
    # The final process keeps the plugin dir on its command line: ``down`` checks it there.
    script = (
        'set -e; m=$(findmnt -n -o TARGET --target "$1"); mount --make-private "$m"; '
        'mount --bind "$2" "$1"; exec "$3" -c "import signal; signal.pause()" "$2"'
    )
    return spawn(
        ["unshare", "--mount", "--propagation", "unchanged", "sh", "-c", script, "holder",
         PLUGIN_DIR, p["plugins"], sys.executable]
    )  # fmt: skip


def holder_ready(pid: int, host_dir: str) -> bool:
    """True once the holder's namespace shows the host's plugin dir at PLUGIN_DIR."""
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            return any(f" {PLUGIN_DIR} " in line for line in f)
    except OSError:
        return False


def dockerd_argv(netns_path: str, holder_pid: int, host_dir: str) -> list[str]:
    """The command line of a host's dockerd."""
    p = engine_paths(host_dir)
    return [
        "nsenter", f"--net={netns_path}", f"--mount=/proc/{holder_pid}/ns/mnt",
        "dockerd", "--data-root", p["data"], "--exec-root", p["exec"],
        "--pidfile", p["pidfile"], "--host", f"unix://{p['sock']}",
        "--config-file", p["config"], "--iptables=false", "--ip6tables=false",
        "--ip-masq=false", "--bridge=none", "--storage-driver=vfs", "--userland-proxy=false",
        "--log-level=warn",
    ]  # fmt: skip


def start_dockerd(netns_path: str, holder_pid: int, host_dir: str) -> subprocess.Popen[bytes]:
    """Start a host's dockerd (not waiting for it)."""
    p = engine_paths(host_dir)
    for d in ("data", "exec"):
        os.makedirs(p[d], exist_ok=True)
    # A SIGKILLed dockerd leaves its pid file, and a new one refuses to start while the old
    # pid still has a /proc entry (a zombie): the caller made sure it is dead.
    if os.path.exists(p["pidfile"]):
        os.unlink(p["pidfile"])
    with open(p["config"], "w") as f:
        f.write("{}\n")
    return spawn(dockerd_argv(netns_path, holder_pid, host_dir), p["log"])


def wait_engine(sock: str, child: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Wait until the engine answers; LabError if it exits or is late."""
    deadline = time.monotonic() + timeout
    pid = child.pid
    while not engine_up(sock):
        if child.poll() is not None:
            raise LabError(f"dockerd {pid} exited; see {os.path.dirname(sock)}/dockerd.log")
        if time.monotonic() > deadline:
            raise LabError(f"dockerd {pid} did not answer on {sock} within {timeout}s")
        time.sleep(0.2)


def busybox_rootfs_tar() -> bytes:
    """A tar of a minimal root filesystem: busybox-static and one symlink per applet."""
    if not os.path.exists(BUSYBOX):
        raise LabError(f"{BUSYBOX} missing: apt-get install busybox-static")
    applets = subprocess.run(
        [BUSYBOX, "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "etc", "tmp", "proc", "sys", "dev"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in applets:
            if applet == "busybox":
                continue
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return buf.getvalue()


def ensure_image(sock: str) -> None:
    """Import ``vxplane/busybox`` into the engine unless it has it."""
    with engine(sock, timeout=120) as http:
        if http.get(f"/images/{IMAGE}/json").status_code == 200:
            return
        repo, tag = IMAGE.split(":")
        resp = http.post(
            "/images/create",
            params={"fromSrc": "-", "repo": repo, "tag": tag},
            content=busybox_rootfs_tar(),
            headers={"Content-Type": "application/x-tar"},
        )
        if resp.status_code != 200 or '"error"' in resp.text:
            raise LabError(f"docker import into {sock}: {resp.status_code} {resp.text[:300]}")


def remove_all_containers(sock: str) -> int:
    """``docker rm -f`` every container of the engine; returns how many."""
    if not engine_up(sock):
        return 0
    with engine(sock, timeout=60) as http:
        containers: list[dict[str, Any]] = http.get("/containers/json", params={"all": 1}).json()
        for c in containers:
            http.delete(f"/containers/{c['Id']}", params={"force": 1, "v": 1})
    return len(containers)


def containerd_pidfile(host_dir: str) -> str:
    """The pid file of the containerd a host's dockerd starts."""
    return os.path.join(engine_paths(host_dir)["exec"], "containerd", "containerd.pid")


def retire_containerd(host_dir: str, timeout: float = 10.0) -> None:
    """Make sure the containerd of a host's dead dockerd is gone; remove its pid file.

    dockerd trusts ``containerd.pid``: while that pid exists (``kill -0``, which a zombie
    or a process in the middle of exiting passes) it adopts it as its containerd instead of
    starting one, cannot connect, and exits 15 s later ("libcontainerd: containerd is still
    running", then "failed to start containerd: timeout waiting for containerd to start").
    A SIGKILLed dockerd's containerd gets SIGKILL from the kernel at the same moment (its
    parent-death signal), so right after the kill it is often still exiting: state R, and
    once the kernel has released its memory its command line reads empty, so it no longer
    looks like ours and used to be neither waited for nor its pid file removed. Here: stop
    it if it is ours, wait (at most ``timeout`` s) while the pid runs ours or an exiting
    process, then remove the pid file whatever it named (a pid reused since is not ours)."""
    cfile = containerd_pidfile(host_dir)
    cpid = read_pidfile(cfile)
    if cpid:
        stop_pid(cpid, host_dir)
        deadline = time.monotonic() + timeout
        while pid_alive(cpid) and time.monotonic() < deadline:
            args = cmdline(cpid)
            if args and not any(host_dir in a for a in args):
                break  # the pid runs something else now
            time.sleep(0.05)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(cfile)


def task_pids(host_dir: str) -> list[tuple[int, int]]:
    """(shim pid, container init pid) of every task containerd recorded for the engine.

    After an engine was SIGKILLed and not started again, its shims and containers live on;
    the containers' ``init.pid`` files are the only record of them (the shim is the init
    process's parent)."""
    tasks = os.path.join(
        engine_paths(host_dir)["exec"],
        "containerd",
        "daemon",
        "io.containerd.runtime.v2.task",
        "moby",
    )
    found: list[tuple[int, int]] = []
    for entry in sorted(os.listdir(tasks)) if os.path.isdir(tasks) else []:
        try:
            with open(os.path.join(tasks, entry, "init.pid")) as f:
                init = int(f.read().strip())
        except (OSError, ValueError):
            continue
        shim = parent_pid(init)
        if shim:
            found.append((shim, init))
    return found


def cli_argv(host_dir: str, args: list[str]) -> list[str]:
    """``docker -H unix://<host's socket> ARGS...``."""
    return [docker_cli(), "-H", f"unix://{engine_paths(host_dir)['sock']}", *args]


def kill_tasks(host_dir: str) -> None:
    """SIGKILL the shims (and their containers) an engine left running, by recorded pid."""
    for shim, init in task_pids(host_dir):
        if not owned(shim, host_dir):
            continue
        if pid_alive(init):
            os.kill(init, signal.SIGKILL)
        os.kill(shim, signal.SIGKILL)


# -- one host's engine, as recorded in the lab's state ------------------------------------


def ensure_holder(name: str, host: dict[str, Any], paths: HostPaths) -> None:
    """Host ``name``'s mount holder (its private /run/docker/plugins), started unless it runs;
    its pid goes to ``host["pids"]``."""
    pid = host["pids"].get("mnt-holder")
    if owned(pid, paths.dir):
        return
    child = start_holder(paths.dir)
    host["pids"]["mnt-holder"] = child.pid
    deadline = time.monotonic() + 10
    while not holder_ready(child.pid, paths.dir):
        if child.poll() is not None or time.monotonic() > deadline:
            raise LabError(f"mount namespace of {name} did not come up")
        time.sleep(0.02)


def ensure_dockerd(netns_path: str, host: dict[str, Any], paths: HostPaths) -> None:
    """The host's dockerd (in its netns and mount holder), started unless it answers, and the
    busybox image; records its pid and socket in ``host``."""
    sock = engine_paths(paths.dir)["sock"]
    pid = host["pids"].get("dockerd")
    if not (pid_alive(pid) and engine_up(sock)):
        if pid:
            stop_pid(pid, paths.dir, timeout=20)
        retire_containerd(paths.dir)
        child = start_dockerd(netns_path, host["pids"]["mnt-holder"], paths.dir)
        host["pids"]["dockerd"] = child.pid
        wait_engine(sock, child)
    host["docker_sock"] = sock
    ensure_image(sock)


def stop_engine(pid: int, host_dir: str) -> None:
    """Remove every container of the host's engine, stop its dockerd (``pid``), the containerd
    and, after a SIGKILLed engine, the shims and containers it left."""
    remove_all_containers(engine_paths(host_dir)["sock"])
    stop_pid(pid, host_dir, timeout=20)
    # dockerd stops the containerd it started, unless it was SIGKILLed once
    containerd = read_pidfile(containerd_pidfile(host_dir))
    if containerd:
        stop_pid(containerd, host_dir)
    kill_tasks(host_dir)
