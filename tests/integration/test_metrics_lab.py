"""Metrics on the real stack: the controller's and two agents' ``/metrics`` scraped with a
viewer token before, during and after an attach in a real lab (OVS in namespaces, agents with
``--metrics``), and a container's death repaired by reconciliation and counted.

Prefix ``vxm-``, underlay 198.18.21.0/24, ports from tests/slots.py (moved by
``VXTEST_SLOT``). Each agent serves its metrics on port 9101 of its own host namespace.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import slots
from vxlab.lab import Lab
from vxlab.launch import controller_and_lab

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

PREFIX = slots.prefix("vxm-")
UNDERLAY = slots.underlay("198.18.21.0/24")
API_PORT, OF_PORT = slots.ports("test_metrics_lab", 2)
AGENT_METRICS_PORT = 9101
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over every label set that includes ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


@dataclass
class Stack:
    lab: Lab
    controller: str
    viewer: str

    def agent_url(self, index: int) -> str:
        return f"http://{self.lab.underlay_ip(index)}:{AGENT_METRICS_PORT}/metrics"

    def scrape(self, url: str, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.viewer}"} if token != "" else {}
        return httpx.get(url, headers=headers, timeout=10)

    def samples(self, url: str) -> Samples:
        resp = self.scrape(url)
        assert resp.status_code == 200, resp.text
        return parse(resp.text)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 20) -> None:
    """Wait for ``check`` to hold (a condition, not a duration, is asserted)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def stack(lab_prerequisites: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Each agent runs in its own host namespace: 0.0.0.0 there is that host's underlay address
    # and loopback, nothing of the machine's.
    with controller_and_lab(
        tmp_path_factory.mktemp("metrics"),
        prefix=PREFIX,
        underlay=UNDERLAY,
        api_port=API_PORT,
        openflow_port=OF_PORT,
        hosts=2,
        extra_agent_args=["--metrics", f"0.0.0.0:{AGENT_METRICS_PORT}"],
    ) as (lab, ctl, api):
        api.post("/api/v1/networks", json={"name": "blue", "subnet": "10.40.0.0/24"})
        viewer = api.post("/api/v1/tokens", json={"role": "viewer"}).raise_for_status()
        yield Stack(lab, f"{ctl.url}/metrics", viewer.json()["token"])


def test_scrapes_need_a_token(stack: Stack) -> None:
    for url in (stack.controller, stack.agent_url(1)):
        anonymous = stack.scrape(url, token="")
        assert anonymous.status_code == 401, (url, anonymous.text)
        assert "vxplane_" not in anonymous.text
        assert stack.scrape(url, token="vxp_000000000000_" + "x" * 43).status_code == 401


def test_an_attach_moves_the_histograms_and_gauges(stack: Stack) -> None:
    h1 = stack.lab.host_name(1)

    def ctl(name: str, **labels: str) -> float:
        return total(stack.samples(stack.controller), name, **labels)

    wait_for("both switches connected", lambda: ctl("vxplane_switches_connected") == 2)
    ctl0 = stack.samples(stack.controller)
    agent0 = stack.samples(stack.agent_url(1))
    assert value(agent0, "vxplane_agent_registered") == 1
    dpid = next(
        dict(ls)["dpid"]
        for (n, ls) in ctl0
        if n == "vxplane_switch_flows" and dict(ls)["host"] == h1
    )
    sw = {"host": h1, "dpid": dpid}

    # scrape both endpoints all through the attach: every scrape answers
    statuses: list[int] = []
    stop = threading.Event()

    def scraper() -> None:
        while not stop.is_set():
            for url in (stack.controller, stack.agent_url(1)):
                statuses.append(stack.scrape(url).status_code)

    thread = threading.Thread(target=scraper, daemon=True)
    thread.start()
    try:
        ep = stack.lab.run("h1", f"{PREFIX}a1", "blue")
    finally:
        stop.set()
        thread.join(30)
    assert ep["state"] == "ready"
    assert statuses and set(statuses) == {200}, statuses

    ctl1 = stack.samples(stack.controller)
    assert value(ctl1, "vxplane_attach_ready_seconds_count") == (
        value(ctl0, "vxplane_attach_ready_seconds_count") + 1
    )
    assert value(ctl1, "vxplane_switch_flows", **sw) > value(ctl0, "vxplane_switch_flows", **sw)
    assert value(ctl1, "vxplane_switch_applied_revision", **sw) > value(
        ctl0, "vxplane_switch_applied_revision", **sw
    )
    assert value(ctl1, "vxplane_engine_pass_seconds_count") > value(
        ctl0, "vxplane_engine_pass_seconds_count"
    )
    binding = "/api/v1/networks/{network}/endpoints/{name:path}/binding"
    assert total(ctl1, "vxplane_api_request_seconds_count", method="PUT", route=binding) >= 1
    ready = value(ctl0, "vxplane_endpoints", state="ready") + 1
    wait_for("the endpoint counted ready", lambda: ctl("vxplane_endpoints", state="ready") == ready)
    wait_for("no revision lag", lambda: ctl("vxplane_switch_revision_lag") == 0)

    agent1 = stack.samples(stack.agent_url(1))
    assert value(agent1, "vxplane_agent_plug_seconds_count") == (
        value(agent0, "vxplane_agent_plug_seconds_count") + 1
    )
    for step in ("veth", "bind", "configure", "port"):
        assert value(agent1, "vxplane_agent_plug_step_seconds_count", step=step) >= 1, step
    assert value(agent1, "vxplane_agent_ovs_op_seconds_count", op="add_port") >= 1
    other = stack.samples(stack.agent_url(2))  # h2 plugged nothing
    assert value(other, "vxplane_agent_plug_seconds_count") == 0


def test_a_dead_container_is_repaired_and_counted(stack: Stack) -> None:
    name = f"{PREFIX}d1"
    stack.lab.run("h2", name, "blue")
    before = total(stack.samples(stack.agent_url(2)), "vxplane_agent_reconcile_repairs_total")
    # the container dies: its namespace goes, and with it the veth on br-int
    subprocess.run(["ip", "netns", "del", name], check=True)

    def repaired() -> bool:
        samples = stack.samples(stack.agent_url(2))
        return total(samples, "vxplane_agent_reconcile_repairs_total") > before

    wait_for("the repair counted", repaired)
    after = stack.samples(stack.agent_url(2))
    assert value(after, "vxplane_agent_ovs_op_seconds_count", op="delete_port") >= 1
