"""Endpoint history and change notes on SQLite and PostgreSQL: written with each bind, move
and unbind, released with a deleted host, pruned per endpoint, gone with the endpoint."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from sqlalchemy.orm import Session, sessionmaker

from controller.db import changes, repo
from controller.db.session import session_scope

A = IPv4Address


def test_history_notes_and_prune(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as s:
        repo.create_network(s, "n1", IPv4Network("10.0.0.0/24"))
        assert [k for k, _ in changes.take(s)] == ["network.created"]
        assert changes.take(s) == []
    for i in (1, 2):
        with session_scope(factory) as s:
            repo.register_host(s, f"h{i}", A(f"198.18.0.{i}"))
    with session_scope(factory) as s:
        repo.create_endpoint(s, "n1", "web")
    for step in range(1, 8):  # port 1 is the hosts' tunnel port
        with session_scope(factory) as s:
            repo.bind_endpoint(s, "n1", "web", f"h{step % 2 + 1}", step + 1)
            kind, data = changes.take(s)[-1]
            assert kind == ("endpoint.bound" if step == 1 else "endpoint.moved")
            assert data["host"] == f"h{step % 2 + 1}"
    with session_scope(factory) as s:
        repo.delete_host(s, "h2")
        assert changes.take(s)[-1][1]["released"] == 1
    with session_scope(factory) as s:
        steps = repo.endpoint_history(s, "n1", "web")
    assert [m.kind for m in steps] == ["unbound"] + ["moved"] * 6 + ["bound"]
    assert steps[0].from_host == "h2" and steps[0].host is None
    with session_scope(factory) as s:
        assert repo.prune_history(s, keep=3) == 5
    with session_scope(factory) as s:
        assert [m.kind for m in repo.endpoint_history(s, "n1", "web")] == [
            "unbound", "moved", "moved",
        ]  # fmt: skip
        repo.delete_endpoint(s, "n1", "web")
    with session_scope(factory) as s:
        repo.create_endpoint(s, "n1", "web")
    with session_scope(factory) as s:
        assert repo.endpoint_history(s, "n1", "web") == []
