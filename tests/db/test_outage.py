"""A database outage seen through the API of two real controller processes on one real
PostgreSQL server that this module stops and starts (issue 10, item 5).

While the server is stopped: writes answer 503 with ``Retry-After`` and say why; the reads
of networks, hosts and bound endpoints come from each controller's in-memory intent with
``X-Vxplane-Stale: 1``; ``/healthz`` answers 200 "degraded" with the reason; a token the
controller never checked is not let in. Once the server is back, each controller answers
from the database again by itself, and its in-memory intent follows writes made after the
outage (seen through a second outage). Loopback only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.api.stale import REVISION_HEADER, STALE_HEADER
from tests.db.conftest import PostgresServer, private_postgres, require_pg_bindir
from tests.liveserver import free_port
from vxlab.launch import ControllerProcess

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll ``check()`` until truthy (an upper bound only)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {timeout} s")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    with private_postgres(require_pg_bindir()) as server:
        yield server


@pytest.fixture(scope="module")
def controllers(pg: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    list[ControllerProcess]
]:  # fmt: skip
    tmp = tmp_path_factory.mktemp("outage")
    ctls: list[ControllerProcess] = []
    try:
        for i in range(2):
            port = free_port()
            ctl = ControllerProcess(
                pg.url, tmp / f"controller-{i}.log", port, free_port(),
                admin_token_file=tmp / f"admin-token-{i}",
                env={"VXPLANE_ADVERTISE_API": f"http://127.0.0.1:{port}"},
            )  # fmt: skip
            ctls.append(ctl.start())
        yield ctls
    finally:
        for ctl in ctls:
            ctl.stop()
        if not pg.running:  # a failed test left it stopped: the fixture's teardown stops it
            pg.start()


def _get(ctl: ControllerProcess, path: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token or ctl.token}"}
    return httpx.get(f"{ctl.url}{path}", headers=headers, timeout=30)


def _post(ctl: ControllerProcess, path: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {ctl.token}"}
    return httpx.post(f"{ctl.url}{path}", json=body, headers=headers, timeout=30)


def _put(ctl: ControllerProcess, path: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {ctl.token}"}
    return httpx.put(f"{ctl.url}{path}", json=body, headers=headers, timeout=30)


def _names(answer: httpx.Response) -> set[str]:
    return {item["name"] for item in answer.json()}


def test_outage_stale_reads_refused_writes_degraded_health_then_recovery(
    pg: PostgresServer, controllers: list[ControllerProcess], tmp_path: Path
) -> None:
    one, two = controllers
    _post(one, "/api/v1/networks", {"name": "blue", "subnet": "10.81.0.0/24"}).raise_for_status()
    _put(
        one, "/api/v1/hosts/h1", {"underlay_ip": "198.18.81.1", "dpid": "00000000000000a1"}
    ).raise_for_status()
    bound = _put(
        one,
        "/api/v1/networks/blue/endpoints/web/binding?create=true",
        {"host": "h1", "ofport": 7, "port_name": "vxweb"},
    )
    bound.raise_for_status()
    _post(one, "/api/v1/networks/blue/endpoints", {"name": "spare"}).raise_for_status()
    revision = one.client().get("/healthz").json()["revision"]
    for ctl in controllers:  # both engines read the last write; both checked their token
        wait_for(  # a pending endpoint's waiting_on is null until the engine read it
            "the bind read by the engine",
            lambda c=ctl: (
                _get(c, "/api/v1/networks/blue/endpoints/web").json()["waiting_on"] is not None
            ),
        )
        assert _get(ctl, "/healthz").json() == {"status": "ok", "revision": revision}
    stranger = _post(one, "/api/v1/tokens", {"role": "viewer", "description": "late"}).json()[
        "token"
    ]

    pg.stop()
    try:
        for ctl in controllers:
            health = _get(ctl, "/healthz")
            assert health.status_code == 200
            assert health.json()["status"] == "degraded"
            assert health.json()["revision"] == revision
            assert "database unavailable" in health.json()["reason"]

            nets = _get(ctl, "/api/v1/networks")
            assert nets.status_code == 200, nets.text
            assert nets.headers[STALE_HEADER] == "1"
            assert nets.headers[REVISION_HEADER] == str(revision)
            (blue,) = nets.json()
            assert blue["name"] == "blue" and blue["subnet"] == "10.81.0.0/24"
            assert blue["endpoints"] == 1  # bound ones only: the reserved one is not in memory
            one_net = _get(ctl, "/api/v1/networks/blue")
            assert one_net.headers[STALE_HEADER] == "1" and one_net.json() == blue
            assert _get(ctl, "/api/v1/networks/red").status_code == 404

            hosts = _get(ctl, "/api/v1/hosts")
            assert hosts.status_code == 200 and hosts.headers[STALE_HEADER] == "1"
            assert [(h["name"], h["dpid"], h["endpoints"]) for h in hosts.json()] == [
                ("h1", "00000000000000a1", 1)
            ]
            assert _get(ctl, "/api/v1/hosts/h1").json()["underlay_ip"] == "198.18.81.1"

            eps = _get(ctl, "/api/v1/endpoints")
            assert eps.status_code == 200 and eps.headers[STALE_HEADER] == "1"
            (web,) = eps.json()
            before = bound.json()
            for field in ("network", "name", "ip", "mac", "host", "ofport", "port_name"):
                assert web[field] == before[field], field
            assert web["revision"] == before["revision"]
            got = _get(ctl, "/api/v1/networks/blue/endpoints/web")
            assert got.status_code == 200 and got.headers[STALE_HEADER] == "1"
            spare = _get(ctl, "/api/v1/networks/blue/endpoints/spare")
            assert spare.status_code == 503 and "not bound" in spare.json()["detail"]

            write = _post(ctl, "/api/v1/networks", {"name": "red", "subnet": "10.82.0.0/24"})
            assert write.status_code == 503
            assert int(write.headers["Retry-After"]) >= 1
            assert "database is unavailable" in write.json()["detail"]
            attach = _put(
                ctl,
                "/api/v1/networks/blue/endpoints/db/binding?create=true",
                {"host": "h1", "ofport": 8},
            )
            assert attach.status_code == 503 and "Retry-After" in attach.headers
            # a token this controller never checked is not let in on trust
            assert _get(ctl, "/api/v1/networks", token=stranger).status_code == 503
    finally:
        pg.start()

    for ctl in controllers:  # each comes back by itself
        wait_for("healthz ok", lambda c=ctl: _get(c, "/healthz").json()["status"] == "ok")
        fresh = _get(ctl, "/api/v1/networks")
        assert fresh.status_code == 200 and STALE_HEADER not in fresh.headers
        assert _get(ctl, "/api/v1/networks", token=stranger).status_code == 200
    _post(two, "/api/v1/networks", {"name": "red", "subnet": "10.82.0.0/24"}).raise_for_status()
    _put(
        one, "/api/v1/networks/blue/endpoints/db/binding?create=true", {"host": "h1", "ofport": 8}
    ).raise_for_status()
    after = _get(one, "/healthz").json()["revision"]
    for ctl in controllers:  # the engines follow the change log again: a pending endpoint's
        wait_for(  # waiting_on is null until the engine has read its revision (the last)
            "the last write read by the engine",
            lambda c=ctl: (
                _get(c, "/api/v1/networks/blue/endpoints/db").json()["waiting_on"] is not None
            ),
        )
    # The engines' models followed those writes: a second outage serves them from memory.
    pg.stop()
    try:
        for ctl in controllers:
            nets = _get(ctl, "/api/v1/networks")
            assert nets.headers.get(STALE_HEADER) == "1"
            assert _names(nets) == {"blue", "red"}
            assert nets.headers[REVISION_HEADER] == str(after)
            eps = _get(ctl, "/api/v1/endpoints?network=blue&limit=1")
            assert [e["name"] for e in eps.json()] == ["db"]
            assert (
                "after=blue%2Fdb" in eps.headers["Link"] or "after=blue/db" in eps.headers["Link"]
            )
    finally:
        pg.start()
