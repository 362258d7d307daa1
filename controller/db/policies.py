"""Network policies: create, list, read, delete (each write bumps the revision and logs the
network: a policy changes flows on every host with an endpoint it selects or names)."""

from __future__ import annotations

from datetime import datetime
from ipaddress import IPv4Address
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controller.db.base import begin_write, bump, network_row, to_network, utcnow
from controller.db.changelog import log_change
from controller.db.changes import note
from controller.db.models import EndpointRow, HostRow, NetworkRow, PolicyRow
from controller.errors import Conflict, NotFound
from controller.intent import NETWORK
from controller.model import Endpoint, EndpointState, Network, label_pairs


def policy_record(network: str, row: PolicyRow) -> dict[str, Any]:
    """The API view: the stored spec with the network, name and creation time."""
    return {**row.spec, "network": network, "name": row.name, "created_at": row.created_at}


def create_policy(
    session: Session, network: str, name: str, spec: dict[str, Any], now: datetime | None = None
) -> tuple[dict[str, Any], int]:
    """Store policy ``name`` of ``network`` (``NotFound`` for an unknown network,
    ``Conflict`` if the name is taken); the policy and the new revision."""
    begin_write(session)
    net = network_row(session, network, lock="update")
    if _find(session, net, name) is not None:
        raise Conflict(
            f"policy {name!r} already exists in network {network!r}: delete it first to replace it"
        )
    row = PolicyRow(network_id=net.id, name=name, spec=dict(spec), created_at=now or utcnow())
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(f"policy {name!r} of network {network!r} was just created") from exc
    note(session, "policy.created", network=network, policy=name)
    revision = bump(session)
    log_change(session, revision, NETWORK, network)
    session.expire(net, ["policies"])
    return policy_record(network, row), revision


def list_policies(session: Session, network: str) -> list[dict[str, Any]]:
    """``network``'s policies by name (``NotFound`` if no such network)."""
    net = network_row(session, network)
    rows = session.execute(
        select(PolicyRow).where(PolicyRow.network_id == net.id).order_by(PolicyRow.name)
    ).scalars()
    return [policy_record(network, row) for row in rows]


def get_policy(session: Session, network: str, name: str) -> dict[str, Any]:
    """Policy ``name`` of ``network`` (``NotFound`` if either is unknown)."""
    net = network_row(session, network)
    row = _find(session, net, name)
    if row is None:
        raise NotFound(f"policy {name!r} does not exist in network {network!r}")
    return policy_record(network, row)


def delete_policy(session: Session, network: str, name: str) -> int:
    """Delete policy ``name`` of ``network`` (``NotFound`` if unknown); the new revision."""
    begin_write(session)
    net = network_row(session, network, lock="update")
    row = _find(session, net, name)
    if row is None:
        raise NotFound(f"policy {name!r} does not exist in network {network!r}")
    session.delete(row)
    session.flush()
    note(session, "policy.deleted", network=network, policy=name)
    revision = bump(session)
    log_change(session, revision, NETWORK, network)
    session.expire(net, ["policies"])
    return revision


def _find(session: Session, net: NetworkRow, name: str) -> PolicyRow | None:
    return session.execute(
        select(PolicyRow).where(PolicyRow.network_id == net.id, PolicyRow.name == name)
    ).scalar_one_or_none()


def policy_networks(session: Session) -> list[tuple[Network, list[Endpoint]]]:
    """Every network that has a policy, with its bound endpoints (what ``policystats``
    needs; networks without policies are not read)."""
    rows = list(session.execute(select(NetworkRow).where(NetworkRow.policies.any())).scalars())
    if not rows:
        return []
    names = {row.id: row.name for row in rows}
    hosts = {hid: name for hid, name in session.execute(select(HostRow.id, HostRow.name))}
    cols = select(
        EndpointRow.network_id, EndpointRow.name, EndpointRow.ip, EndpointRow.mac,
        EndpointRow.host_id, EndpointRow.ofport, EndpointRow.state, EndpointRow.bound_rev,
        EndpointRow.labels,
    ).where(EndpointRow.network_id.in_(names), EndpointRow.host_id.is_not(None))  # fmt: skip
    members: dict[int, list[Endpoint]] = {nid: [] for nid in names}
    for nid, name, ip, mac, host_id, ofport, state, bound_rev, labels in session.execute(cols):
        members[nid].append(
            Endpoint(
                network=names[nid],
                name=name,
                ip=IPv4Address(ip),
                mac=mac,
                host=hosts[host_id] if host_id is not None else None,
                ofport=ofport,
                state=EndpointState(state),
                bound_rev=bound_rev,
                labels=label_pairs(labels),
            )  # fmt: skip
        )
    return [(to_network(row), members[row.id]) for row in rows]
