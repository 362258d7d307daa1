"""Start and stop a controller as a child process, alone or with a lab (demo, tests, benchmarks)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from vxcommon.paging import collect
from vxlab.lab import Lab


def get_all(api: httpx.Client, path: str, params: dict[str, Any] | None = None) -> list[Any]:
    """Every item of one of the controller's paged lists (follows ``Link: rel="next"``)."""

    def fetch(url: str, query: Any) -> httpx.Response:
        return api.get(url, params=query).raise_for_status()

    return collect(fetch, path, params)


class ControllerProcess:
    """A ``vxplane controller`` child process with its own database, ports and log file."""

    MARKER = "controller.cli.main"  # in the command line of every controller started here

    def __init__(
        self,
        db_url: str,
        log_path: Path,
        api_port: int = 8080,
        openflow_port: int = 6653,
        api_host: str = "127.0.0.1",
        openflow_host: str = "127.0.0.1",
        env: dict[str, str] | None = None,
        admin_token_file: Path | None = None,
        tls: tuple[str, str, str] | None = None,
        api_tls: tuple[str, str, str] | None = None,
    ) -> None:
        self.db_url = db_url
        self.tls = tls  # OpenFlow over TLS: (certificate, key, CA)
        self.api_tls = api_tls  # the API over TLS: (certificate, key, CA clients check it with)
        self.log_path = log_path
        self.admin_token_file = admin_token_file or log_path.parent / "admin-token"
        self.api_port = api_port
        self.openflow_port = openflow_port
        self.api_host = api_host
        self.openflow_host = openflow_host
        self.env = dict(env or {})  # extra environment, e.g. {"VXPLANE_HOST_DEAD_AFTER": "3"}
        self.proc: subprocess.Popen[bytes] | None = None
        # Where this process's output starts in ``log_path`` (each start appends to it)
        self.log_offset = 0

    @property
    def url(self) -> str:
        """The API as reached from this (root) namespace."""
        host = "127.0.0.1" if self.api_host in ("0.0.0.0", "") else self.api_host
        return f"{'https' if self.api_tls else 'http'}://{host}:{self.api_port}"

    @property
    def verify(self) -> str | bool:
        """What a client checks the API's certificate with (the CA of ``api_tls``)."""
        return self.api_tls[2] if self.api_tls else True

    @property
    def token(self) -> str:
        """The admin token the controller wrote at its first start."""
        return self.admin_token_file.read_text().strip()

    def client(self, timeout: float = 30.0) -> httpx.Client:
        """An httpx client of the API carrying the admin token."""
        return httpx.Client(
            base_url=self.url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {self.token}"},
            verify=self.verify,
        )

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 30.0) -> ControllerProcess:
        """Start the child and wait for ``/healthz`` (refused if the API port is taken, so a
        stale controller answering there is never mistaken for this one)."""
        with socket.socket() as probe:
            # SO_REUSEADDR as uvicorn does: TIME_WAIT leftovers of an earlier run are fine,
            # a live listener is not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", self.api_port))
            except OSError as exc:
                raise RuntimeError(f"API port {self.api_port} is in use: {exc}") from exc
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.log_offset = log.tell()
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    self.MARKER,
                    "controller",
                    "--db",
                    self.db_url,
                    "--api",
                    f"{self.api_host}:{self.api_port}",
                    "--openflow",
                    f"{self.openflow_host}:{self.openflow_port}",
                    "--admin-token-file",
                    str(self.admin_token_file),
                    *self.tls_args(),
                    *self.api_tls_args(),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **self.env} if self.env else None,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"controller exited with {self.proc.returncode}; see {self.log_path}"
                )
            try:
                healthz = httpx.get(f"{self.url}/healthz", timeout=1, verify=self.verify)
                if healthz.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(
            f"controller did not answer /healthz in {timeout:.0f} s; see {self.log_path}"
        )

    def api_tls_args(self) -> list[str]:
        """The controller's API TLS options (none without ``api_tls``)."""
        if self.api_tls is None:
            return []
        cert, key, _ = self.api_tls
        return ["--api-cert", cert, "--api-key", key]

    def tls_args(self) -> list[str]:
        """The controller's OpenFlow TLS options (none without ``tls``)."""
        if self.tls is None:
            return []
        cert, key, ca = self.tls
        return ["--openflow-cert", cert, "--openflow-key", key, "--openflow-ca", ca]

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def _require_free(port: int) -> None:
    """Fail if ``port`` has a live listener: a stale controller there would answer for ours."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError as exc:
            raise RuntimeError(f"port {port} is in use ({exc}): a leftover controller?") from exc


@contextmanager
def controller_and_lab(
    tmp: Path,
    *,
    prefix: str,
    underlay: str,
    api_port: int,
    openflow_port: int,
    hosts: int,
    env: dict[str, str] | None = None,
    tls: bool = False,
    **up: Any,
) -> Iterator[tuple[Lab, ControllerProcess, httpx.Client]]:
    """Start a controller (SQLite in ``tmp``, listening on the lab's gateway address) and a
    ``hosts``-host lab pointed at it, each agent with its own agent token; yield (lab,
    controller, API client carrying the admin token) and remove both afterwards, also on
    failure.

    Used by the real-stack tests and the benchmarks; each uses its own prefix, underlay and
    ports, so they never share a lab. ``up`` goes to ``Lab.up`` (``docker=True``,
    ``extra_agent_args=[...]``). ``tls`` runs OpenFlow over TLS with the lab's own CA.
    """
    # Ports first: a controller listening there may be another run's, using this very lab.
    _require_free(openflow_port)
    _require_free(api_port)  # checked again by ControllerProcess.start
    lab = Lab(prefix=prefix, underlay=underlay)
    lab.down()  # leftovers of an interrupted run
    ctl = ControllerProcess(
        f"sqlite:///{tmp}/vx.db",
        tmp / "controller.log",
        api_port,
        openflow_port,
        api_host=lab.gateway_ip,
        openflow_host=lab.gateway_ip,
        env=env,
        tls=lab.ensure_pki(hosts) if tls else None,
    )
    api: httpx.Client | None = None
    try:
        lab.ensure_fabric()  # the controller listens on the fabric's gateway address
        ctl.start()
        api = ctl.client()
        lab.up(
            hosts=hosts,
            controller_url=ctl.url,
            openflow=f"{'ssl' if tls else 'tcp'}:{lab.gateway_ip}:{openflow_port}",
            admin_token=ctl.token,
            tls=tls,
            **up,
        )
        yield lab, ctl, api
    finally:
        if api is not None:
            api.close()
        lab.down()
        ctl.stop()
