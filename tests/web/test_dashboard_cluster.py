"""The dashboard of a controller cluster, in real headless Chromium: two controllers on one
PostgreSQL server (started by this module) and two emulated hosts.

The page, served by the first controller, lists both members (live, lease age, API URL, the
switches each masters: the same answer as ``GET /api/v1/controllers``), shows for each host
who masters its switch and the answering controller's own role there (master where it is the
master, slave elsewhere, as the switch granted them), and, once the second controller is
SIGKILLed, shows it lapsed and the first one master of both switches.

Prefix ``vxwc-``, underlay 198.18.23.0/24, ports from tests/slots.py.
Everything (namespaces, controllers by pid, the PostgreSQL server) is removed at the end,
also on failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from conftest import ConsoleLog

from tests import slots
from tests.clusterlab import controllers_and_lab
from tests.conftest import require
from tests.db.conftest import INSTALL_HINT, find_pg_bindir, postgres_server
from vxlab.lab import Lab
from vxlab.launch import ControllerProcess

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

PREFIX = slots.prefix("vxwc-")
UNDERLAY = slots.underlay("198.18.23.0/24")
_PORTS = slots.ports("test_dashboard_cluster", 4)
API_PORTS, OF_PORTS = _PORTS[:2], _PORTS[2:]


@dataclass
class Cluster:
    lab: Lab
    ctls: list[ControllerProcess]

    def api(self) -> httpx.Client:
        return self.ctls[0].client()


@pytest.fixture(scope="module")
def cluster(web_prerequisites: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    bindir = find_pg_bindir()
    require(None if bindir is not None else INSTALL_HINT, "the dashboard cluster test")
    assert bindir is not None
    tmp = tmp_path_factory.mktemp("webcluster")
    with postgres_server(bindir) as db_url:
        lab = Lab(prefix=PREFIX, underlay=UNDERLAY)
        with controllers_and_lab(lab, db_url, tmp, API_PORTS, OF_PORTS, hosts=2) as ctls:
            yield Cluster(lab, ctls)


@pytest.fixture
def page(browser: Any, cluster: Cluster) -> Iterator[Any]:
    """The dashboard of the first controller, signed in; fails on unexpected page errors."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    tab = context.new_page()
    log = ConsoleLog()
    log.attach(tab)
    log.allow(r"status of 401 ")  # the first look for a session, before signing in
    ctl = cluster.ctls[0]
    tab.goto(ctl.url + "/")
    tab.wait_for_selector("#login:not([hidden])", timeout=10_000)
    tab.fill("#login-token", ctl.token)
    tab.click("#login-submit")
    tab.wait_for_selector("body[data-ready=true]", timeout=10_000)
    yield tab
    context.close()
    assert log.unexpected() == [], "the dashboard logged errors:\n" + "\n".join(log.errors)


def _members(api: httpx.Client) -> list[dict[str, Any]]:
    return api.get("/api/v1/controllers").raise_for_status().json()  # type: ignore[no-any-return]


def _wait(what: str, check: Any, timeout: float = 30.0) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while not (got := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {timeout} s")
        time.sleep(0.2)
    return got


def _spread(api: httpx.Client) -> dict[str, str] | None:
    """host -> master id once both members are live, each masters one switch, and every
    host is converged with its master's role confirmed by the switch; else None."""
    members = _members(api)
    hosts = api.get("/api/v1/hosts").raise_for_status().json()
    if len(members) != 2 or not all(m["alive"] and len(m["switches"]) == 1 for m in members):
        return None
    if len(hosts) != 2 or not all(h["status"] == "converged" and h["switch"] for h in hosts):
        return None
    roles = [(h["switch"]["role"], h["master"] and h["master"]["this"]) for h in hosts]
    if sorted(roles) != [("master", True), ("slave", False)]:
        return None
    return {s["host"]: m["id"] for m in members for s in m["switches"]}


def test_members_and_masters_then_a_killed_member_shows_lapsed(page: Any, cluster: Cluster) -> None:
    from playwright.sync_api import expect

    with cluster.api() as api:
        masters = _wait("both switches spread and converged", lambda: _spread(api), 60)
        members = {m["id"]: m for m in _members(api)}
    me = next(m for m in members.values() if m["this"])  # the page's controller
    other = next(m for m in members.values() if not m["this"])
    assert me["api_url"] == cluster.ctls[0].url and other["api_url"] == cluster.ctls[1].url
    mine = next(h for h, m in masters.items() if m == me["id"])
    theirs = next(h for h, m in masters.items() if m == other["id"])

    expect(page.locator("#sum-controllers")).to_have_text("2/2 controllers live", timeout=5000)
    page.click("#tab-controllers")
    expect(page.locator("#count-controllers")).to_have_text("2")
    for member, host in ((me, mine), (other, theirs)):
        row = page.locator(f'#controllers-table tr[data-controller="{member["id"]}"]')
        expect(row).to_have_attribute("data-alive", "true")
        expect(row).to_have_attribute("data-this", str(member["this"]).lower())
        expect(row).to_contain_text(member["api_url"])
        expect(row).to_contain_text(member["openflow"])
        expect(row.locator("td.masters")).to_have_text(host)
        assert row.locator("td").nth(4).inner_text().endswith(" s")  # lease age
    expect(page.locator(f'#controllers-table tr[data-controller="{me["id"]}"]')).to_contain_text(
        "(this)"
    )

    page.click("#tab-hosts")
    for host in (mine, theirs):  # the slave shows the convergence its master published
        row = page.locator(f'#hosts-table tr[data-host="{host}"]')
        expect(row).to_have_attribute("data-status", "converged", timeout=5000)
    cell = page.locator(f'#hosts-table tr[data-host="{mine}"] td.master')
    expect(cell).to_have_attribute("data-master", me["id"], timeout=5000)
    expect(cell).to_have_attribute("data-role", "master")
    expect(cell).to_have_text("this controller")
    cell = page.locator(f'#hosts-table tr[data-host="{theirs}"] td.master')
    expect(cell).to_have_attribute("data-master", other["id"])
    expect(cell).to_have_attribute("data-role", "slave")  # as the switch granted it
    expect(cell).to_contain_text(other["api_url"])
    expect(cell).to_contain_text("here: slave")
    page.screenshot(path=str(cluster.ctls[0].log_path.parent / "cluster.png"), full_page=True)

    cluster.ctls[1].kill()  # SIGKILL: no clean leave, its lease runs out
    page.click("#tab-controllers")
    gone = page.locator(f'#controllers-table tr[data-controller="{other["id"]}"]')
    expect(gone).to_have_attribute("data-alive", "false", timeout=20_000)
    expect(gone).to_contain_text("lapsed")
    expect(page.locator("#sum-controllers")).to_have_text("1/2 controllers live")
    expect(page.locator("#sum-controllers")).to_have_class("chip bad")
    page.click("#tab-hosts")
    cell = page.locator(f'#hosts-table tr[data-host="{theirs}"] td.master')
    expect(cell).to_have_attribute("data-master", me["id"], timeout=20_000)  # taken over
    expect(cell).to_have_attribute("data-role", "master", timeout=20_000)  # switch confirmed
    with cluster.api() as api:
        now = {m["id"]: m for m in _members(api)}
    assert not now[other["id"]]["alive"] and now[other["id"]]["switches"] == []
    assert sorted(s["host"] for s in now[me["id"]]["switches"]) == sorted([mine, theirs])
