"""The dashboard in real headless Chromium over a real controller and a 3-host lab.

Prefix ``vxw-``, underlay 198.18.6.0/24, ports from tests/slots.py (apart from the
demo and the other test labs). The lab holds the demo's networks and endpoints, so the
screenshot saved to ``docs/dashboard.png`` shows what ``make demo`` shows. The controller
runs with ``VXPLANE_HOST_DEAD_AFTER=3`` and the agents heartbeat every second, so a host
whose agent and switch are killed is reported lost within seconds. Traffic only between
namespaces this module makes; everything is removed at the end, also on failure.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ConsoleLog

from tests import slots
from vxlab.demo import ENDPOINTS as DEMO_ENDPOINTS
from vxlab.demo import SUBNET as DEMO_SUBNET
from vxlab.lab import Lab
from vxlab.launch import ControllerProcess, controller_and_lab

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

PREFIX = slots.prefix("vxw-")
UNDERLAY = slots.underlay("198.18.6.0/24")
API_PORT, OF_PORT = slots.ports("test_dashboard", 2)
DEAD_AFTER = 3.0
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"


@dataclass
class Stack:
    lab: Lab
    ctl: ControllerProcess
    api: httpx.Client

    def host(self, short: str) -> str:
        return self.lab.host_name(short)

    def converged(self, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            hosts = self.api.get("/api/v1/hosts").json()
            if len(hosts) == 3 and all(h["status"] == "converged" for h in hosts):
                return hosts
            if time.monotonic() > deadline:
                raise AssertionError(f"hosts did not converge: {hosts}")
            time.sleep(0.1)


@pytest.fixture(scope="module")
def stack(web_prerequisites: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with controller_and_lab(
        tmp_path_factory.mktemp("web"),
        prefix=PREFIX,
        underlay=UNDERLAY,
        api_port=API_PORT,
        openflow_port=OF_PORT,
        hosts=3,
        env={"VXPLANE_HOST_DEAD_AFTER": str(DEAD_AFTER), "VXPLANE_HOST_WATCH_INTERVAL": "0.3"},
        extra_agent_args=["--heartbeat-interval", "0.5"],
    ) as (lab, ctl, api):
        for net in ("blue", "red"):
            r = api.post("/api/v1/networks", json={"name": net, "subnet": DEMO_SUBNET})
            r.raise_for_status()
        for name, host, net, ip in DEMO_ENDPOINTS:  # the demo's endpoints, on this lab
            lab.run(lab.host_name(host.removeprefix("lab-")), name, net, ip=ip)
        yield Stack(lab, ctl, api)


@pytest.fixture
def console() -> ConsoleLog:
    """What the page logs; a test may ``allow`` errors it provokes."""
    return ConsoleLog()


@pytest.fixture
def page(browser: Any, stack: Stack, console: ConsoleLog) -> Iterator[Any]:
    """The dashboard, loaded; fails the test if the page logged an unexpected error."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    tab = context.new_page()
    log = console
    log.attach(tab)
    log.allow(r"status of 401 ")  # the first look for a session, before signing in
    sign_in(tab, stack.ctl.url, stack.ctl.token)
    tab.wait_for_selector("body[data-ready=true]", timeout=10_000)
    yield tab
    context.close()
    assert log.unexpected() == [], "the dashboard logged errors:\n" + "\n".join(log.errors)


def sign_in(tab: Any, url: str, token: str) -> None:
    """Open the dashboard and sign in with ``token`` through its form."""
    tab.goto(url + "/")
    tab.wait_for_selector("#login:not([hidden])", timeout=10_000)
    tab.fill("#login-token", token)
    tab.click("#login-submit")


def test_sign_in_is_asked_once_and_a_bad_token_is_refused(
    browser: Any, stack: Stack, console: ConsoleLog
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context()
    tab = context.new_page()
    console.attach(tab)
    console.allow(r"status of 401 ")
    console.allow(r"status of 403 ")
    try:
        sign_in(tab, stack.ctl.url, "vxp_000000000000_" + "x" * 43)
        expect(tab.locator("#login-error")).to_contain_text("unknown or revoked token")
        assert tab.locator("body[data-ready=true]").count() == 0  # nothing loaded
        viewer = stack.api.post("/api/v1/tokens", json={"role": "viewer"}).json()["token"]
        tab.fill("#login-token", viewer)
        tab.click("#login-submit")
        tab.wait_for_selector("body[data-ready=true]", timeout=10_000)
        expect(tab.locator("#whoami-role")).to_have_text("viewer")
        cookies = {c["name"]: c for c in context.cookies()}
        assert cookies["vxplane_session"]["httpOnly"]
        assert cookies["vxplane_session"]["sameSite"] == "Strict"
        # a viewer may look but not change: the form shows the API's refusal
        tab.click("#tab-networks")
        tab.fill("#nf-name", "viewer-net")
        tab.fill("#nf-subnet", "10.77.0.0/24")
        tab.click("#nf-submit")
        expect(tab.locator("#nf-error")).to_contain_text("viewer token may not POST")
        # the session survives a reload (no second sign-in), and ends with sign out
        tab.reload()
        tab.wait_for_selector("body[data-ready=true]", timeout=10_000)
        assert tab.locator("#login").is_hidden()
        tab.click("#logout")
        tab.wait_for_selector("#login:not([hidden])", timeout=10_000)
    finally:
        context.close()
    assert console.unexpected() == [], "\n".join(console.errors)


def _endpoint(page: Any, host: str, key: str) -> Any:
    return page.locator(f'g.host[data-host="{host}"] g.endpoint[data-endpoint="{key}"]')


def test_page_shows_the_demo_lab_without_errors(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    stack.converged()
    for short in ("h1", "h2", "h3"):
        host = page.locator(f'g.host[data-host="{stack.host(short)}"]')
        expect(host).to_have_attribute("data-status", "converged", timeout=5000)
    for name, host, net, ip in DEMO_ENDPOINTS:
        node = _endpoint(page, stack.host(host.removeprefix("lab-")), f"{net}/{name}")
        expect(node).to_be_visible()
        expect(node).to_have_attribute("data-state", "ready", timeout=5000)
        if ip:
            expect(node).to_have_attribute("data-ip", ip)
    expect(page.locator("#sum-converged")).to_have_text("all switches converged", timeout=5000)
    expect(page.locator("#sum-hosts")).to_have_text("3/3 hosts connected")
    # the hosts table: flows, applied vs wanted revision, heartbeat
    row = page.locator(f'#hosts-table tr[data-host="{stack.host("h2")}"]')
    expect(row).to_contain_text("converged")
    expect(row).to_contain_text("connected")
    flows = stack.api.get(f"/api/v1/hosts/{stack.host('h2')}").json()["switch"]["flow_count"]
    assert flows > 0
    expect(row.locator("td").nth(4)).to_have_text(str(flows))
    # networks and endpoints tables, with search
    page.click("#tab-networks")
    expect(page.locator('#networks-table tr[data-network="blue"]')).to_contain_text(DEMO_SUBNET)
    page.click("#tab-endpoints")
    expect(page.locator("#endpoints-table tbody tr")).to_have_count(len(DEMO_ENDPOINTS))
    page.fill("#search", "red-")
    expect(page.locator("#endpoints-table tbody tr")).to_have_count(2)
    page.select_option("#ef-host", stack.host("h3"))
    expect(page.locator("#endpoints-table tbody tr")).to_have_count(1)
    page.fill("#search", "")
    page.select_option("#ef-host", "")
    page.click("#tab-hosts")
    expect(page.locator("#log li").first).to_be_visible()
    expect(page.locator("#stream")).to_have_attribute("data-state", "live")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True, animations="disabled")
    # the page does not shadow the API, its docs or the health check
    assert stack.api.get("/healthz").json()["status"] == "ok"
    assert "/api/v1/events" in stack.api.get("/openapi.json").json()["paths"]
    assert stack.api.get("/docs").status_code == 200
    assert stack.api.get("/static/app.js").headers["content-type"].startswith("text/javascript")


def test_trace_between_two_endpoints_shows_the_path_and_the_switches(
    page: Any, stack: Stack, console: ConsoleLog
) -> None:
    from playwright.sync_api import expect

    console.allow(r"status of 422 ")  # the refused question at the end

    stack.converged()
    page.click("#tab-trace")
    page.select_option("#tf-network", "blue")
    page.select_option("#tf-src", "blue-1")
    page.select_option("#tf-dst", "blue-2")
    page.select_option("#tf-protocol", "tcp")
    page.fill("#tf-port", "8080")
    page.click("#tf-submit")
    verdict = page.locator("#trace-verdict")
    expect(verdict).to_have_attribute("data-verdict", "delivered", timeout=15_000)
    expect(verdict).to_have_attribute("data-agree", "true")
    expect(verdict).to_contain_text("delivered to blue-2")
    h1, h2 = stack.host("h1"), stack.host("h2")
    expect(page.locator(f'#trace-table tr[data-host="{h1}"]').first).to_be_visible()
    expect(page.locator("#trace-table tr.decided")).to_have_attribute("data-host", h2)
    switches = page.locator("#trace-switches li")
    expect(switches).to_have_count(2)
    for host in (h1, h2):
        expect(page.locator(f'#trace-switches li[data-host="{host}"]')).to_have_attribute(
            "data-agrees", "true"
        )
    # a question the API refuses is shown, not thrown
    page.select_option("#tf-protocol", "tcp")
    page.fill("#tf-port", "")
    page.click("#tf-submit")
    expect(page.locator("#tf-error")).to_contain_text("needs a destination port")


def test_network_created_through_the_form_is_in_the_api(
    page: Any, stack: Stack, console: ConsoleLog
) -> None:
    from playwright.sync_api import expect

    # the browser logs every 4xx answer; the ones provoked here are expected
    console.allow(r"status of (409|422) ")
    page.click("#tab-networks")
    page.fill("#nf-name", "green")
    page.fill("#nf-subnet", "10.40.0.1/24")
    page.click("#nf-submit")
    error = page.locator("#nf-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("has host bits set: did you mean 10.40.0.0/24?")
    assert stack.api.get("/api/v1/networks/green").status_code == 404

    page.fill("#nf-subnet", "10.40.0.0/24")
    page.fill("#nf-vni", "4242")
    page.click("#nf-submit")
    expect(page.locator("#nf-ok")).to_contain_text("Created network green")
    expect(error).to_be_hidden()
    net = stack.api.get("/api/v1/networks/green").json()
    assert (net["subnet"], net["vni"]) == ("10.40.0.0/24", 4242)
    expect(page.locator('#networks-table tr[data-network="green"]')).to_be_visible(timeout=1000)
    expect(page.locator("#log li", has_text="network green created")).to_be_visible(timeout=1000)

    page.fill("#nf-name", "green")  # a taken name: the API's 409 is shown
    page.fill("#nf-subnet", "10.41.0.0/24")
    page.click("#nf-submit")
    expect(error).to_contain_text("network 'green' already exists")

    delete = page.locator('#networks-table tr[data-network="green"] button.danger')
    delete.click()
    expect(delete).to_have_text("Confirm delete")
    delete.click()
    expect(page.locator('#networks-table tr[data-network="green"]')).to_have_count(0, timeout=2000)
    assert stack.api.get("/api/v1/networks/green").status_code == 404

    blue = page.locator('#networks-table tr[data-network="blue"] button.danger')
    blue.click()
    expect(blue).to_have_text("Confirm delete")
    page.wait_for_timeout(2500)  # a refresh rebuilds the table: the row still waits to confirm
    expect(blue).to_have_text("Confirm delete")
    blue.click()
    expect(error).to_contain_text("still has endpoints bound")


def test_endpoint_started_in_the_lab_appears_within_a_second(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    h1 = stack.host("h1")
    ep = stack.lab.run(h1, "vxw-new", "blue")
    node = _endpoint(page, h1, "blue/vxw-new")
    expect(node).to_be_visible(timeout=1000)  # no reload: the event stream brought it
    expect(node).to_have_attribute("data-ip", ep["ip"])
    expect(page.locator("#log li", has_text="blue/vxw-new")).to_have_count(2, timeout=1000)

    stack.lab.rm("vxw-new")
    expect(node).to_have_count(0, timeout=1000)
    removed = f"blue/vxw-new ({ep['ip']}) removed from {h1}"
    expect(page.locator("#log li", has_text=removed)).to_be_visible()


def test_moved_endpoint_is_drawn_on_its_new_host(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    h1, h2 = stack.host("h1"), stack.host("h2")
    first = stack.lab.run(h1, "vxw-mv", "blue")
    expect(_endpoint(page, h1, "blue/vxw-mv")).to_be_visible(timeout=1000)
    stack.lab.rm("vxw-mv")
    second = stack.lab.run(h2, "vxw-mv", "blue")
    assert second["ip"] == first["ip"]
    expect(_endpoint(page, h2, "blue/vxw-mv")).to_be_visible(timeout=1000)
    expect(_endpoint(page, h1, "blue/vxw-mv")).to_have_count(0)

    # a live migration (bound on the new host before the old one lets go) is a "move"
    stack.api.put(
        "/api/v1/networks/blue/endpoints/vxw-mv/binding",
        json={"host": h1, "ofport": 4000, "move": True},
    ).raise_for_status()
    expect(_endpoint(page, h1, "blue/vxw-mv")).to_be_visible(timeout=1000)
    expect(_endpoint(page, h2, "blue/vxw-mv")).to_have_count(0)
    moved = page.locator("#log li[data-type='endpoint.moved']", has_text="blue/vxw-mv")
    expect(moved).to_contain_text(f"moved from {h2} to {h1}", timeout=1000)

    _endpoint(page, h1, "blue/vxw-mv").click()
    history = page.locator("#drawer-history li")
    expect(history).to_have_count(4)
    expect(history.nth(0)).to_contain_text(f"moved from {h2} to {h1}")
    expect(history.nth(3)).to_contain_text(f"added on {h1}")
    page.click("#drawer-close")
    stack.lab.rm("vxw-mv")  # the agent of h2 unbinds only from h2: unbind by hand
    stack.api.delete("/api/v1/networks/blue/endpoints/vxw-mv/binding").raise_for_status()


def test_host_whose_agent_and_switch_die_is_shown_lost(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    h3 = stack.host("h3")
    box = page.locator(f'g.host[data-host="{h3}"]')
    expect(box).to_have_attribute("data-status", "converged", timeout=5000)
    row = next(h for h in stack.lab.status()["hosts"] if h["name"] == h3)
    for daemon in ("agent", "ovs-vswitchd"):
        os.kill(row["pids"][daemon]["pid"], signal.SIGKILL)
    # In the lab the switch's TCP FIN cannot leave: it would go out through br-phy, which the
    # killed ovs-vswitchd itself served. So the heartbeat going stale is what tells here.
    t0 = time.monotonic()
    expect(box).to_have_attribute("data-status", "lost", timeout=(DEAD_AFTER + 4) * 1000)
    assert time.monotonic() - t0 < DEAD_AFTER + 4
    expect(page.locator("#log li", has_text=f"host {h3} lost")).to_be_visible()
    expect(page.locator(f'#hosts-table tr[data-host="{h3}"]')).to_contain_text("lost")
    expect(page.locator("#sum-hosts")).to_contain_text("1 lost")
    # the others are unaffected
    expect(page.locator(f'g.host[data-host="{stack.host("h1")}"]')).to_have_attribute(
        "data-status", "converged"
    )
