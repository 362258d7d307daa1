"""The dashboard's Policies tab in real headless Chromium: each network's policies with their
selector, the endpoints it selects (from their labels) and their rules; kept current by the
event stream; an endpoint's labels in its drawer.

No lab: the app on a real uvicorn with a SQLite file (policies need no switch to be shown).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ConsoleLog
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.auth import Role
from controller.config import Settings
from controller.db import migrate, tokens
from controller.db.session import make_engine, make_session_factory
from tests.liveserver import serve

pytestmark = pytest.mark.timeout(120)

SHOP = "/api/v1/networks/shop"
DB_FROM_WEB = {
    "name": "db-from-web",
    "selector": {"matchLabels": {"app": "db"}},
    "ingress": [
        {
            "from": [{"selector": {"matchLabels": {"app": "web"}}}, {"cidr": "10.9.0.0/16"}],
            "ports": [{"protocol": "tcp", "port": 5432}],
        }
    ],
}
WEB_OUT = {
    "name": "web-out",
    "selector": {"matchLabels": {"app": "web", "tier": "front"}},
    "policy_types": ["Egress"],
    "egress": [{"to": [{"selector": {"matchLabels": {"app": "db"}}}], "ports": [{"port": 5432}]}],
}
CLOSED = {"name": "closed", "policy_types": ["Ingress"]}


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, str, TestClient]]:
    """The API on a real uvicorn: networks shop and lab, labelled endpoints, policies."""
    url = f"sqlite:///{tmp_path}/vxplane.db"
    migrate.upgrade(url)
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        _, token = tokens.create_token(session, Role.admin)
        session.commit()
    engine.dispose()
    app = create_app(Settings(db_url=url, allowed_hosts=["127.0.0.1", "testserver"]))
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        for name, subnet in (("shop", "10.5.0.0/24"), ("lab", "10.6.0.0/24")):
            assert client.post("/api/v1/networks", json={"name": name, "subnet": subnet}).is_success
        client.put("/api/v1/hosts/h1", json={"underlay_ip": "198.18.0.1", "dpid": 1})
        for port, (name, labels) in enumerate(
            (("db1", {"app": "db"}), ("web1", {"app": "web", "tier": "front"}), ("x", {})),
            start=5,
        ):
            r = client.put(
                f"{SHOP}/endpoints/{name}/binding",
                params={"create": "true"},
                json={"host": "h1", "ofport": port, "labels": labels},
            )
            assert r.is_success, r.text
        r = client.post(f"{SHOP}/endpoints", json={"name": "db2", "labels": {"app": "db"}})
        assert r.is_success, r.text  # reserved: selected, not bound
        for body in (DB_FROM_WEB, WEB_OUT):
            assert client.post(f"{SHOP}/policies", json=body).status_code == 201
        assert client.post("/api/v1/networks/lab/policies", json=CLOSED).status_code == 201
        with serve(app) as base:
            yield base, token, client


def test_policies_tab_lists_selectors_endpoints_and_rules(
    browser: Any, live: tuple[str, str, TestClient]
) -> None:
    from playwright.sync_api import expect

    base, token, client = live
    console = ConsoleLog()
    console.allow(r"status of 401 ")  # the first look for a session, before signing in
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    console.attach(page)
    try:
        page.goto(base + "/")
        page.wait_for_selector("#login:not([hidden])", timeout=10_000)
        page.fill("#login-token", token)
        page.click("#login-submit")
        page.wait_for_selector("body[data-ready=true]", timeout=10_000)

        page.click("#tab-policies")
        rows = page.locator("#policies-table tbody tr[data-policy]")
        expect(rows).to_have_count(3)
        expect(page.locator("#count-policies")).to_have_text("3")
        db = page.locator('#policies-table tr[data-network="shop"][data-policy="db-from-web"]')
        cells = db.locator("td")
        expect(cells.nth(2)).to_have_text("app=db")
        expect(cells.nth(3)).to_have_text("1 bound · 1 not")  # db1 bound, db2 reserved
        expect(db.locator('td[data-direction="ingress"] li')).to_have_text(
            "from app=web or 10.9.0.0/16 · tcp/5432"
        )
        expect(db.locator('td[data-direction="egress"]')).to_have_text("not restricted")
        web = page.locator('#policies-table tr[data-policy="web-out"]')
        expect(web.locator("td").nth(2)).to_have_text("app=web, tier=front")
        expect(web).to_have_attribute("data-selected", "1")
        expect(web.locator('td[data-direction="ingress"]')).to_have_text("not restricted")
        expect(web.locator('td[data-direction="egress"] li')).to_have_text("to app=db · tcp/5432")
        closed = page.locator('#policies-table tr[data-network="lab"][data-policy="closed"]')
        expect(closed.locator("td").nth(2)).to_have_text("every endpoint of the network")
        expect(closed.locator('td[data-direction="ingress"]')).to_have_text("nothing allowed")

        page.select_option("#pf-network", "lab")
        expect(rows).to_have_count(1)
        page.select_option("#pf-network", "shop")
        expect(rows).to_have_count(2)
        page.fill("#search", "web-out")
        expect(rows).to_have_count(1)
        page.fill("#search", "")

        # a policy made elsewhere appears through the event stream; a relabel moves the count
        body = {"name": "all-out", "policy_types": ["Egress"], "egress": [{}]}
        assert client.post(f"{SHOP}/policies", json=body).status_code == 201
        made = page.locator('#policies-table tr[data-policy="all-out"]')
        expect(made.locator('td[data-direction="egress"] li')).to_have_text(
            "to anyone · any port", timeout=3000
        )
        expect(made).to_have_attribute("data-selected", "3")
        r = client.patch(f"{SHOP}/endpoints/x", json={"labels": {"app": "db"}})
        assert r.status_code == 200, r.text
        expect(db.locator("td").nth(3)).to_have_text("2 bound · 1 not", timeout=3000)
        page.select_option("#log-filter", "policy")
        expect(
            page.locator("#log li", has_text="policy all-out of network shop created")
        ).to_be_visible()
        assert client.delete(f"{SHOP}/policies/all-out").status_code == 204
        expect(made).to_have_count(0, timeout=3000)

        # an endpoint's labels are in its drawer
        page.click("#tab-endpoints")
        page.locator('#endpoints-table tr[data-endpoint="shop/web1"] button').click()
        drawer = page.locator("#drawer-body")
        expect(drawer).to_contain_text("app=web, tier=front")
    finally:
        page.close()
    assert console.unexpected() == [], "\n".join(console.errors)
