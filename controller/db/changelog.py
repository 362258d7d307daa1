"""The change log: which rows each flow-relevant write changed, for the engines to re-read.

A writer calls :func:`log_change` in its transaction, after ``bump`` (so on PostgreSQL the
revision row lock orders the log as the commits: a reader never sees revision n+1 without
n). An engine at revision r calls :func:`read_changes` in one snapshot transaction: the rows
of every revision after r, and the values now of the rows they name, as ``intent.Change``.
If a revision in between has no row (pruned, or a write that did not log), the answer is
None and the engine reads everything again.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address

from sqlalchemy import Select, delete, func, insert, select
from sqlalchemy.orm import Session

from controller.db.base import read_revision, stored_ipv4, to_network
from controller.db.models import BlockRow, ChangeRow, EndpointRow, HostRow, NetworkRow
from controller.intent import (
    BLOCKS,
    ENDPOINT,
    HOST,
    KINDS,
    NETWORK,
    Change,
    Value,
    endpoint_key,
    split_endpoint_key,
)
from controller.model import Block, Endpoint, EndpointState, Host, label_pairs

ChangeGroups = tuple[int, list[tuple[int, list[Change]]]]  # (revision now, by revision)
CHUNK = 500  # keys per IN (...) query
PRUNE_KEEP = 100_000  # revisions of log kept (an engine further behind reads everything)


def log_change(session: Session, revision: int, kind: str, key: str) -> None:
    """Record that this transaction (at ``revision``) changed the row ``kind``/``key``."""
    assert kind in KINDS, kind
    session.execute(insert(ChangeRow).values(revision=revision, kind=kind, key=key))


def log_endpoint(session: Session, revision: int, network: str, name: str) -> None:
    """``log_change`` for an endpoint."""
    log_change(session, revision, ENDPOINT, endpoint_key(network, name))


def read_changes(session: Session, after: int) -> ChangeGroups | None:
    """(revision now, the changes since ``after`` with their rows' values now, grouped by
    revision in order), or None when the log does not cover every revision since ``after``
    (read everything instead).

    Call it in a snapshot transaction (``repo.begin_snapshot``) so the rows and the log agree.
    """
    now = read_revision(session)
    if now <= after:
        return now, []
    rows = session.execute(changes_after(after)).all()
    if {r for r, _, _ in rows} != set(range(after + 1, now + 1)):
        return None
    keys: dict[str, list[str]] = {kind: [] for kind in KINDS}
    seen: set[tuple[str, str]] = set()
    for _, kind, key in rows:
        if (kind, key) not in seen:
            seen.add((kind, key))
            keys[kind].append(key)
    values: dict[tuple[str, str], Value] = {}
    values.update(((NETWORK, k), v) for k, v in _networks(session, keys[NETWORK]).items())
    values.update(((HOST, k), v) for k, v in _hosts(session, keys[HOST]).items())
    values.update(((BLOCKS, k), v) for k, v in _blocks(session, keys[BLOCKS]).items())
    values.update(((ENDPOINT, k), v) for k, v in _endpoints(session, keys[ENDPOINT]).items())
    groups: list[tuple[int, list[Change]]] = []
    for revision, kind, key in rows:
        if not groups or groups[-1][0] != revision:
            groups.append((revision, []))
        groups[-1][1].append(Change(kind, key, values.get((kind, key))))
    return now, groups


def changes_after(after: int) -> Select[int, str, str]:
    """The log rows after revision ``after`` in log order. Ordered by (revision, seq), the
    order of the revision index (seq is the row id): the same order as seq alone, since a
    writer logs only after its ``bump`` and holds the revision until it commits. Ordered by
    seq alone, SQLite scanned the whole log in seq order instead of searching the index
    (1.3 ms at 62,000 rows, growing with the log, on every engine pass; 0.04 ms by the
    index: docs/benchmarks.md "Churn at 1,000 x 50: controller CPU per event")."""
    return (
        select(ChangeRow.revision, ChangeRow.kind, ChangeRow.key)
        .where(ChangeRow.revision > after)
        .order_by(ChangeRow.revision, ChangeRow.seq)
    )


def prune(session: Session, keep: int = PRUNE_KEEP) -> int:
    """Forget log rows more than ``keep`` revisions old; how many went (the caller commits)."""
    newest = session.execute(select(func.max(ChangeRow.revision))).scalar()
    if newest is None:
        return 0
    result = session.execute(delete(ChangeRow).where(ChangeRow.revision <= newest - keep))
    return int(result.rowcount)  # type: ignore[attr-defined]


def _chunks(keys: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(keys), CHUNK):
        yield keys[i : i + CHUNK]


def to_host(row: HostRow) -> Host:
    """The model value of a host row."""
    return Host(
        name=row.name,
        underlay_ip=IPv4Address(row.underlay_ip),
        dpid=int(row.dpid, 16) if row.dpid is not None else None,
        tunnel_port=row.tunnel_port,
        last_seen=row.last_seen,
        egress_ip=IPv4Address(row.egress_ip) if row.egress_ip else None,
        gateway_port=row.gateway_port,
        egress_ip6=IPv6Address(row.egress_ip6) if row.egress_ip6 else None,
    )


def _networks(session: Session, names: list[str]) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for part in _chunks(names):
        for row in session.execute(select(NetworkRow).where(NetworkRow.name.in_(part))).scalars():
            out[row.name] = to_network(row)
    return out


def _hosts(session: Session, names: list[str]) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for part in _chunks(names):
        for row in session.execute(select(HostRow).where(HostRow.name.in_(part))).scalars():
            out[row.name] = to_host(row)
    return out


def _blocks(session: Session, networks: list[str]) -> dict[str, Value]:
    found: dict[str, list[Block]] = {name: [] for name in networks}
    for part in _chunks(networks):
        query = (
            select(NetworkRow.name, BlockRow.cidr, HostRow.name)
            .join(NetworkRow, BlockRow.network_id == NetworkRow.id)
            .join(HostRow, BlockRow.host_id == HostRow.id)
            .where(NetworkRow.name.in_(part))
            .order_by(BlockRow.id)
        )
        for net, cidr, host in session.execute(query):
            found[net].append(Block(net, IPv4Network(cidr), host))
    return {name: tuple(blocks) for name, blocks in found.items()}


def _endpoints(session: Session, keys: list[str]) -> dict[str, Value]:
    """The bound endpoints of ``keys`` (those not found: deleted or unbound).

    Looked up by network names and endpoint names, two IN lists (the rows of other pairs
    of those lists dropped here), not by ``(network, name) IN (pairs)``: PostgreSQL plans
    that row-value list as a filter over every endpoint of the network (an OR per pair on
    each row: 51 ms for 50 keys, 350 ms for 200 at 50,000 endpoints, measured), where the
    two lists are one probe each of the (network_id, name) index."""
    out: dict[str, Value] = {}
    for part in _chunks(keys):
        pairs = {split_endpoint_key(k) for k in part}
        query = (
            select(
                NetworkRow.name,
                EndpointRow.name,
                EndpointRow.ip,
                EndpointRow.mac,
                HostRow.name,
                EndpointRow.ofport,
                EndpointRow.state,
                EndpointRow.bound_rev,
                EndpointRow.labels,
                EndpointRow.port_name,
                EndpointRow.created_at,
                EndpointRow.updated_at,
                EndpointRow.ready_at,
            )  # fmt: skip
            .join(NetworkRow, EndpointRow.network_id == NetworkRow.id)
            .join(HostRow, EndpointRow.host_id == HostRow.id)  # only bound ones count
            .where(
                NetworkRow.name.in_(sorted({n for n, _ in pairs})),
                EndpointRow.name.in_(sorted({e for _, e in pairs})),
            )
        )
        for r in session.execute(query):
            if (r[0], r[1]) not in pairs:  # another pair of the two lists
                continue
            out[endpoint_key(r[0], r[1])] = Endpoint(
                r[0],
                r[1],
                stored_ipv4(r[2]),
                r[3],
                r[4],
                r[5],
                EndpointState(r[6]),
                r[7],
                label_pairs(r[8]),
                port_name=r[9],
                created_at=r[10],
                updated_at=r[11],
                ready_at=r[12],
            )
    return out
