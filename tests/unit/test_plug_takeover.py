"""Issue 8: a plug does not silently take an endpoint bound elsewhere (two binds racing for
one endpoint both answered 200 before, the last one winning). The controller refuses a plain
bind of an endpoint bound to another host or port (409 with it); the plug takes it over only
from its own host or from a host that is not alive, at the revision it was shown."""

from __future__ import annotations

from typing import Any

import pytest

from hostagent.errors import Conflict
from tests.unit.agentfakes import HOST, FakeHost
from tests.unit.test_plug import NS, req


@pytest.fixture
def host() -> FakeHost:
    h = FakeHost()
    h.links.add_netns(NS)
    h.ctl.register_host("h2", "198.18.0.2")
    return h


def test_an_endpoint_on_a_live_host_is_not_taken(host: FakeHost) -> None:
    host.ctl.bind("blue", "a", "h2", 7, create=True)
    with pytest.raises(Conflict, match="in use on host h2, which is alive"):
        host.plugger().plug(req())
    assert host.is_empty()  # the veth and port were undone
    assert host.ctl.view()[("blue", "a")][1:3] == ("h2", 7)


def test_an_endpoint_on_a_dead_host_is_taken_over_at_its_revision(host: FakeHost) -> None:
    held, _ = host.ctl.bind("blue", "a", "h2", 7, create=True)
    host.ctl.hosts["h2"]["alive"] = False
    ep = host.plugger().plug(req())
    assert (ep.host, ep.ip, ep.ready) == (HOST, held.ip, True)
    refused, taken = [kwargs for _, kwargs in host.ctl.calls_of("bind")][-2:]
    assert "if_revision" not in refused and taken["if_revision"] == held.revision


def test_a_new_sandbox_on_this_host_takes_the_endpoint_from_the_old_port(
    host: FakeHost,
) -> None:
    host.ctl.bind("blue", "a", HOST, 40, create=True)  # the old sandbox's port
    ep = host.plugger().plug(req())
    assert ep.host == HOST and ep.ofport != 40


def test_a_bind_between_the_refusal_and_the_take_over_wins(
    host: FakeHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    host.ctl.bind("blue", "a", "h2", 7, create=True)
    host.ctl.hosts["h2"]["alive"] = False
    host.ctl.register_host("h3", "198.18.0.3")
    get_host = host.ctl.get_host

    def meanwhile(name: str) -> Any:
        host.ctl.bind("blue", "a", "h3", 8, move=True)  # h3 took it while we looked
        return get_host(name)

    monkeypatch.setattr(host.ctl, "get_host", meanwhile)
    with pytest.raises(Exception, match="revision"):
        host.plugger().plug(req())
    assert host.is_empty() and host.ctl.view()[("blue", "a")][1:3] == ("h3", 8)
