"""The agent's side of controller tasks: a long poll over its own authenticated connection.

The controller never connects to an agent: the agent asks ``GET /api/v1/hosts/{host}/tasks``
(held open up to ``POLL_WAIT`` s), carries out what it gets and answers each task. One kind
exists: ``ofproto/trace`` (``vxplane trace`` asks the hosts on a packet's path what their
switch does with it), run as ``ovs-appctl -t <ovs-vswitchd's control socket> ofproto/trace
BRIDGE FLOW``. Only the agent's own bridge is traced, and only a flow written in the plain
field=value syntax: the controller cannot make the agent run anything else.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from hostagent.client import ControllerClient, ControllerError
from hostagent.errors import AgentError

log = logging.getLogger("hostagent.tasks")

POLL_WAIT = 25.0
FLOW_TEXT = re.compile(r"^[A-Za-z0-9_=,.:/]{1,2000}$")
TRACE_TIMEOUT = 10.0
MAX_OUTPUT = 60_000  # characters of output sent back (the controller takes up to 64 Ki)


def vswitchd_ctl(ovsdb: str, given: str | None = None) -> str:
    """ovs-vswitchd's control socket: ``given``, else beside the OVSDB socket of ``ovsdb``
    (``unix:DIR/db.sock``): ``DIR/ovs-vswitchd.ctl`` if it exists, else
    ``DIR/ovs-vswitchd.<pid>.ctl`` from ``DIR/ovs-vswitchd.pid`` (the packages' layout)."""
    if given:
        return given
    directory = "/run/openvswitch"
    if ovsdb.startswith("unix:"):
        directory = os.path.dirname(ovsdb[len("unix:") :]) or directory
    plain = os.path.join(directory, "ovs-vswitchd.ctl")
    if os.path.exists(plain):
        return plain
    try:
        with open(os.path.join(directory, "ovs-vswitchd.pid")) as file:
            pid = file.read().strip()
    except OSError:
        return plain
    return os.path.join(directory, f"ovs-vswitchd.{pid}.ctl")


def ofproto_trace(ctl: str, bridge: str, flow: str) -> str:
    """``ovs-appctl ofproto/trace`` of ``flow`` on ``bridge``; its output (AgentError if it
    fails or the flow is not plain field=value text)."""
    if not FLOW_TEXT.match(flow):
        raise AgentError(f"refusing to trace {flow[:80]!r}: not a plain field=value flow")
    try:
        done = subprocess.run(
            ["ovs-appctl", "-t", ctl, "ofproto/trace", bridge, flow],
            capture_output=True, text=True, timeout=TRACE_TIMEOUT, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AgentError(f"ovs-appctl ofproto/trace: {exc}") from exc
    if done.returncode != 0:
        raise AgentError(f"ovs-appctl ofproto/trace: {done.stderr.strip() or done.returncode}")
    return done.stdout


class TaskLoop:
    """Polls the controller for this host's tasks on a thread of its own, and answers them."""

    def __init__(
        self,
        client: ControllerClient,
        host: str,
        bridge: str,
        ctl: str,
        *,
        trace: Callable[[str, str, str], str] = ofproto_trace,
        wait: float = POLL_WAIT,
    ) -> None:
        self.client = client
        self.host = host
        self.bridge = bridge
        self.ctl = ctl
        self.trace = trace
        self.wait = wait
        self.done = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start polling."""
        self._thread = threading.Thread(target=self._run, name="tasks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the poll in flight (the thread is a daemon: exit does not wait for it)."""
        self._stop.set()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                for task in self.client.take_tasks(self.host, self.wait):
                    self.handle(task)
                backoff = 0.5
            except (AgentError, ControllerError) as exc:
                detail = getattr(exc, "detail", str(exc))
                log.debug("host %s: task poll: %s", self.host, detail)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def handle(self, task: dict[str, Any]) -> None:
        """Carry out one task and answer it (an unknown kind is answered with an error)."""
        output, error = "", None
        if task.get("kind") != "ofproto/trace":
            error = f"this agent does not know task {task.get('kind')!r}"
        elif task.get("args", {}).get("bridge") != self.bridge:
            error = f"this agent traces only its own bridge {self.bridge}"
        else:
            try:
                output = self.trace(self.ctl, self.bridge, str(task["args"].get("flow", "")))
            except AgentError as exc:
                error = exc.detail
        log.info("host %s: task %s %s: %s", self.host, task.get("id"), task.get("kind"),
                 error or "done")  # fmt: skip
        try:
            self.client.answer_task(self.host, str(task["id"]), output[:MAX_OUTPUT], error)
            self.done += 1
        except ControllerError as exc:  # the asker gave up meanwhile: nothing to do
            log.info("host %s: task %s: %s", self.host, task.get("id"), exc.detail)
