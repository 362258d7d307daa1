"""Binds and unbinds, one or many, as one set-based write: the one write function behind
``PUT .../binding`` (create-and-bind included), ``DELETE .../binding`` and ``POST
/api/v1/bindings``, and behind ``repo.attach_endpoint`` / ``repo.unbind_endpoint``.

For N items the statements are a handful, not a dozen per item (issue 9 item 2; counted and
timed by ``bench/write_statements.py``, docs/benchmarks.md "Set-based binds"):

1. ``begin_write`` (SQLite: the write lock, so what is read next is still true at commit;
   once per transaction, so the other writes of a group-commit batch skip it);
2. only if an item may create: which of its names exist (no locks);
3. the networks named (PostgreSQL: ``FOR SHARE`` in id order; ``FOR UPDATE`` if a name is to
   be created, for the allocation), without their publications and policies;
4. the endpoints named, with the host each is bound to and its ``last_seen`` (PostgreSQL:
   ``FOR UPDATE OF endpoints`` in id order, so two batches never deadlock on them); a name
   seen in 2 and gone here was deleted meanwhile (409, retry);
5. the target hosts, outer-joined with the endpoints holding the ports the items name;
6. then every check in Python, item by item in order, against the state as the items before
   left it (a port freed or taken earlier in the batch counts), the agent's scope check on
   the rows already read (``scope``: no second read of the endpoint);
7. one revision bump for the whole write (at the first item that changes something, so a
   write that changes nothing bumps nothing), one ``executemany`` UPDATE of the endpoints in
   item order (each step a valid state, so the unique (host, ofport) index holds at every
   row), one INSERT of the history rows, one INSERT of the change-log rows.

A bind of an existing endpoint is 8 statements in all on SQLite (with BEGIN; was 19 with
the scope check's own reads), an unbind 8 (was 13); a batch of 16 or 64 binds 11.

A new name (``create``) goes through ``controller.db.allocate.new_endpoint`` (one per new
name: allocation reads the addresses and blocks the network holds), which inserts it already
bound at the write's revision (12 statements for the create-and-bind of the attach path, was
23); the updates planned before it are written first (its reclaim may delete a reservation
an earlier item binds). With more than one item each creation runs in a SAVEPOINT, so one
that fails is rolled back alone (with the revision bump, if it made it).

Semantics and errors per item are those of the per-item path this replaces (see
``controller.db.endpoints.attach_endpoint``): an item that fails is reported in its outcome,
changes nothing and notes nothing; the others apply. Every change of one write shares its
revision. Notes (``controller.db.changes``) are made in item order after the writes.

A unique-index violation at the UPDATE (on PostgreSQL, a concurrent bind to the same port
that the read in step 5 could not see) is, for one item, the ``Conflict`` the single bind
always answered; with several items the ``IntegrityError`` is raised for the caller to run
each item alone (``POST /api/v1/bindings`` does).

All core statements, not the ORM unit of work: the rows read are plain tuples; the ORM
rows in the session for endpoints changed here are expired so a later ORM read in the same
transaction (group commit) sees the new values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from ipaddress import IPv4Address
from typing import Any

from sqlalchemy import Table, and_, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, lazyload
from sqlalchemy.orm.util import identity_key

from controller.db import changes
from controller.db.allocate import new_endpoint
from controller.db.base import (
    EndpointCols,
    begin_write,
    bump,
    dialect,
    endpoint_record,
    utcnow,
)
from controller.db.models import Base, ChangeRow, EndpointMoveRow, EndpointRow, HostRow, NetworkRow
from controller.db.records import EndpointRecord
from controller.errors import Conflict, InvalidRequest, NotFound, VxplaneError
from controller.intent import BLOCKS, ENDPOINT, endpoint_key
from controller.model import EndpointState

MAX_OFPORT = 65279  # OVS gives ports 1..65279 (0xfeff); the API refuses others


class RevisionMismatch(Conflict):
    """A condition on the endpoint failed: ``if_revision`` is not its current revision, or
    (delete ``if_unbound``) it is bound. HTTP 409 with the endpoint.

    ``endpoint`` is the endpoint as it is now, None when the name does not exist.
    """

    def __init__(self, message: str, endpoint: EndpointRecord | None) -> None:
        super().__init__(message)
        self.endpoint = endpoint


@dataclass(frozen=True)
class Binding:
    """One item: bind ``name`` of ``network`` to ``host``'s ``ofport`` (``ofport`` None:
    unbind it, if bound to ``host``; ``host`` None: from wherever it is bound)."""

    network: str
    name: str
    host: str | None
    ofport: int | None = None
    port_name: str | None = None
    ip: IPv4Address | None = None
    labels: dict[str, str] | None = None
    if_revision: int | None = None
    move: bool = False
    create: bool = False

    @property
    def unbind(self) -> bool:
        return self.ofport is None


@dataclass
class Outcome:
    """What became of one item: the endpoint (as it is after the item, or as it is when a
    condition on it failed), whether it was created, the revision if it changed something;
    or ``error``."""

    record: EndpointRecord | None = None
    created: bool = False
    revision: int | None = None
    error: VxplaneError | None = None


# scope(item, the host the endpoint is bound to, that host's last_seen): raise to refuse
Scope = Callable[[Binding, str, datetime | None], None]


@dataclass(frozen=True, slots=True)
class NetCols:
    """What a bind reads of its network when no item creates (``create`` needs the
    ``NetworkRow`` for allocation): the columns of an endpoint's record."""

    id: int
    name: str
    vni: int
    subnet: str
    gateway: str
    subnet6: str | None


@dataclass(frozen=True, slots=True)
class HostCols:
    """What a bind reads of a target host: plain columns, not an ORM ``HostRow`` (building
    one per target host and keeping it in the session's identity map cost more than the
    statement that reads it)."""

    id: int
    name: str
    last_seen: datetime | None
    tunnel_port: int | None


@dataclass
class _Net:
    row: NetworkRow | NetCols
    locked_for_create: bool = False


@dataclass
class _Plan:
    """What the write will do, in item order."""

    updates: list[dict[str, Any]] = field(default_factory=list)
    labels: list[dict[str, str]] = field(default_factory=list)  # of each update
    relabel: bool = False  # an update changes labels: all of them set labels (else none)
    moves: list[dict[str, Any]] = field(default_factory=list)
    log: dict[tuple[str, str], None] = field(default_factory=dict)  # ordered set
    revision: int | None = None


def write(
    session: Session,
    items: Sequence[Binding],
    *,
    scope: Scope | None = None,
    now: datetime | None = None,
) -> list[Outcome]:
    """Apply ``items`` in order, each on its own (see the module docstring); one outcome per
    item. The caller commits."""
    begin_write(session)
    now = now or utcnow()
    held = changes.take(session)  # notes of earlier writes in this transaction
    w = _Write(session, items, scope, now)
    outcomes = w.run()
    for kind, data in held + w.notes_in_order(outcomes):
        changes.note(session, kind, **data)
    return outcomes


class _Write:
    def __init__(
        self, session: Session, items: Sequence[Binding], scope: Scope | None, now: datetime
    ) -> None:
        self.s = session
        self.items = items
        self.scope = scope
        self.now = now
        self.many = len(items) > 1
        self.pg = dialect(session) == "postgresql"
        self.plan = _Plan()
        self.notes: list[list[tuple[str, dict[str, Any]]]] = [[] for _ in items]

    # reads

    def _read(self) -> None:
        items = self.items
        pairs = {(i.network, i.name) for i in items if i.create}
        creating = bool(pairs) and bool(pairs - _existing(self.s, pairs))
        # one statement, in id order: a batch that creates locks its networks FOR UPDATE
        lock = "update" if creating else "share"
        names = {i.network for i in items}
        self.nets = {row.name: _Net(row, creating) for row in self._networks(names, lock)}
        self.hosts: dict[int, tuple[str, datetime | None]] = {}  # id -> (name, last_seen)
        self.eps = self._endpoints({(i.network, i.name) for i in items})
        self.targets: dict[str, HostCols] = {}
        self.ports = self._targets()

    def _networks(self, names: set[str], lock: str) -> list[NetworkRow] | list[NetCols]:
        """The networks named; PostgreSQL: locked (``lock`` "share" or "update") in id order.
        ORM rows only when creating (allocation reads them), else their columns."""
        if not names:
            return []
        if lock == "update":
            query = select(NetworkRow).where(NetworkRow.name.in_(sorted(names)))
            # not its publications and policies (two more statements): loaded if ever read
            query = query.options(
                lazyload(NetworkRow.publications), lazyload(NetworkRow.policies)
            ).order_by(NetworkRow.id)
            if self.pg:
                query = query.with_for_update()
            return list(self.s.execute(query).scalars())
        cols = select(*_NET_COLS).where(NetworkRow.name.in_(sorted(names)))
        if self.pg:
            cols = cols.order_by(NetworkRow.id).with_for_update(read=True)
        return [NetCols(*row) for row in self._core(cols)]

    def _core(self, query: Any) -> Any:
        """Run a select of plain columns as Core on the session's connection: the rows as
        the driver gives them (with the columns' type conversions), without the ORM's result
        machinery (its per-row loading was a tenth of a batch's write in py-spy samples).
        Unlike ``Session.execute`` this does not autoflush: flushed here."""
        self.s.flush()
        return self.s.connection().execute(query)

    def _endpoints(self, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], EndpointCols]:
        """The endpoints named, as columns, with the host each is bound to (``self.hosts``);
        PostgreSQL: locked in id order."""
        by_id = {n.row.id: n.row.name for n in self.nets.values()}
        if not by_id:
            return {}
        query = (
            select(*_EP_COLS, HostRow.name, HostRow.last_seen)
            .outerjoin(HostRow, EndpointRow.host_id == HostRow.id)
            .where(
                EndpointRow.network_id.in_(sorted(by_id)),
                EndpointRow.name.in_(sorted({e for _, e in wanted})),
            )
        )
        if self.pg:
            query = query.order_by(EndpointRow.id).with_for_update(of=EndpointRow)
        found: dict[tuple[str, str], EndpointCols] = {}
        for row in self._core(query):
            r: tuple[Any, ...] = tuple(row)  # the columns of _EP_COLS, host name, last_seen
            key = (by_id[r[1]], r[2])
            if key in wanted:
                found[key] = EndpointCols(*r[: len(_EP_COLS)])
                if r[5] is not None:
                    self.hosts[r[5]] = (r[-2], r[-1])
        return found

    def _targets(self) -> dict[tuple[int, int], tuple[int, str, str]]:
        """Read the hosts the items bind to (``self.targets``) and, in the same statement,
        the endpoints holding the ports named on them; (host id, ofport) -> (endpoint id,
        name, network) for those and for the ports the items' endpoints hold now."""
        ports: dict[tuple[int, int], tuple[int, str, str]] = {}
        for (network, _), ep in self.eps.items():
            if ep.host_id is not None and ep.ofport is not None:
                ports[(ep.host_id, ep.ofport)] = (ep.id, ep.name, network)
        binds = [i for i in self.items if not i.unbind and i.host is not None]
        if not binds:
            return ports
        query = (
            select(*_HOST_COLS, EndpointRow.id, EndpointRow.ofport, EndpointRow.name,
                   NetworkRow.name)
            .outerjoin(EndpointRow, and_(
                EndpointRow.host_id == HostRow.id,
                EndpointRow.ofport.in_(sorted({i.ofport for i in binds})),
            ))
            .outerjoin(NetworkRow, EndpointRow.network_id == NetworkRow.id)
            .where(HostRow.name.in_(sorted({str(i.host) for i in binds})))
        )  # fmt: skip
        for row in self._core(query):
            host = self.targets.get(row[1])
            if host is None:
                host = self.targets[row[1]] = HostCols(*row[: len(_HOST_COLS)])
            ep_id, ofport, name, network = row[len(_HOST_COLS) :]
            self.hosts[host.id] = (host.name, host.last_seen)
            if ep_id is not None and ofport is not None:
                ports.setdefault((host.id, ofport), (ep_id, name, network))
        return ports

    # the items

    def run(self) -> list[Outcome]:
        self._read()
        outcomes: list[Outcome] = []
        for n, item in enumerate(self.items):
            try:
                outcomes.append(self._unbind(n, item) if item.unbind else self._bind(n, item))
            except VxplaneError as exc:
                self.notes[n] = []
                outcomes.append(Outcome(error=exc))
        self._flush()
        return outcomes

    def notes_in_order(self, outcomes: list[Outcome]) -> list[tuple[str, dict[str, Any]]]:
        return [note for o, ns in zip(outcomes, self.notes, strict=True) if o.error is None
                for note in ns]  # fmt: skip

    def _revision(self) -> int:
        if self.plan.revision is None:
            self.plan.revision = bump(self.s)
        return self.plan.revision

    def _record(self, net: NetworkRow | NetCols, ep: EndpointCols) -> EndpointRecord:
        host = self.hosts[ep.host_id][0] if ep.host_id is not None else None
        return endpoint_record(ep, net, host)

    def _find(self, item: Binding) -> tuple[NetworkRow | NetCols, EndpointCols | None]:
        net = self.nets.get(item.network)
        if net is None:
            raise NotFound(f"network {item.network!r} does not exist")
        ep = self.eps.get((item.network, item.name))
        if ep is None and not item.create:
            raise NotFound(f"endpoint {item.name!r} does not exist in network {item.network!r}")
        if ep is None and not net.locked_for_create:
            raise Conflict(
                f"endpoint {item.name!r} of network {item.network!r} was deleted while being "
                "bound: retry"
            )
        if ep is not None and ep.host_id is not None and self.scope is not None:
            name, last_seen = self.hosts[ep.host_id]
            self.scope(item, name, last_seen)
        return net.row, ep

    def _unbind(self, n: int, item: Binding) -> Outcome:
        net, ep = self._find(item)
        assert ep is not None
        current = self.hosts[ep.host_id][0] if ep.host_id is not None else None
        if current is None or (item.host is not None and current != item.host):
            return Outcome(self._record(net, ep))
        revision = self._revision()
        self._free_port(ep)
        ep.host_id = ep.ofport = ep.port_name = ep.ready_at = None
        ep.state = EndpointState.RESERVED.value
        ep.released_at = ep.updated_at = self.now
        self._update(ep)
        self._move(ep, "unbound", None, current, None)
        self._log(ENDPOINT, endpoint_key(item.network, item.name))
        self.notes[n].append((
            "endpoint.unbound",
            dict(network=item.network, endpoint=ep.name, ip=ep.ip, host=current,
                 revision=revision),
        ))  # fmt: skip
        return Outcome(self._record(net, ep), revision=revision)

    def _bind(self, n: int, item: Binding) -> Outcome:
        assert item.ofport is not None and item.host is not None
        net, ep = self._find(item)
        current = ep.bound_rev if ep is not None else 0
        if item.if_revision is not None and item.if_revision != current:
            state = f"is at revision {current}" if ep is not None else "does not exist (revision 0)"
            raise RevisionMismatch(
                f"endpoint {item.name!r} of network {item.network!r} {state}, not "
                f"{item.if_revision}: read it again and retry",
                self._record(net, ep) if ep is not None else None,
            )
        if ep is not None and item.ip is not None and str(item.ip) != ep.ip:
            raise Conflict(
                f"endpoint {ep.name!r} of network {item.network!r} already holds {ep.ip}, "
                f"not {item.ip}: delete it first to change its address"
            )
        target = self.targets.get(item.host)
        if target is None:
            raise NotFound(f"host {item.host!r} is not registered")
        ofport = item.ofport
        if (
            ep is not None
            and item.if_revision is None
            and not item.move
            and ep.host_id is not None
            and (ep.host_id, ep.ofport) != (target.id, ofport)
        ):
            raise RevisionMismatch(
                f"endpoint {ep.name!r} of network {net.name!r} is bound to host "
                f"{self.hosts[ep.host_id][0]!r} (ofport {ep.ofport}, revision {ep.bound_rev}): "
                f'a bind moves it only with "move": true or "if_revision": {ep.bound_rev}',
                self._record(net, ep),
            )
        relabel = ep is not None and item.labels is not None and item.labels != ep.labels
        if (
            ep is not None
            and ep.host_id == target.id
            and ep.ofport == ofport
            and (item.port_name is None or item.port_name == ep.port_name)
        ):
            if not relabel:
                return Outcome(self._record(net, ep))
            revision = self._revision()
            ep.labels, ep.updated_at = dict(item.labels or {}), self.now
            self.plan.relabel = True
            self._update(ep)
            self._log(ENDPOINT, endpoint_key(item.network, item.name))
            return Outcome(self._record(net, ep), revision=revision)
        self._check_port(ep, target, ofport)
        created, from_host = ep is None, None
        if ep is None:
            ep = self._create(n, item, net, target)  # inserted bound, at the revision
        else:
            if relabel:
                ep.labels, self.plan.relabel = dict(item.labels or {}), True
            if ep.host_id is not None and ep.host_id != target.id:
                from_host = self.hosts[ep.host_id][0]
            self._free_port(ep)
            ep.host_id, ep.ofport, ep.port_name = target.id, ofport, item.port_name
            ep.state, ep.bound_rev = EndpointState.PENDING.value, self._revision()
            ep.ready_at = ep.released_at = None
            ep.updated_at = self.now
            self._update(ep)
        revision = self._revision()
        self.ports[(target.id, ofport)] = (ep.id, ep.name, item.network)
        kind = "moved" if from_host is not None else "bound"
        self._move(ep, kind, target.name, from_host, ofport)
        self._log(ENDPOINT, endpoint_key(item.network, item.name))
        self.notes[n].append((
            f"endpoint.{kind}",
            dict(network=item.network, endpoint=ep.name, ip=ep.ip, host=target.name,
                 from_host=from_host, ofport=ofport, revision=revision),
        ))  # fmt: skip
        return Outcome(self._record(net, ep), created=created, revision=revision)

    def _check_port(self, ep: EndpointCols | None, target: HostCols, ofport: int) -> None:
        if not 1 <= ofport <= MAX_OFPORT:
            raise InvalidRequest(f"ofport {ofport} is outside 1..{MAX_OFPORT}")
        if ofport == target.tunnel_port:
            raise Conflict(
                f"ofport {ofport} of host {target.name!r} is its VXLAN tunnel port: "
                "an endpoint cannot be bound to it"
            )
        holder = self.ports.get((target.id, ofport))
        if holder is not None and (ep is None or holder[0] != ep.id):
            by = f"endpoint {holder[1]!r} of network {holder[2]!r}"
            raise port_taken(target.name, ofport, by)

    def _create(
        self, n: int, item: Binding, net: NetworkRow | NetCols, target: HostCols
    ) -> EndpointCols:
        """Insert ``item``'s new endpoint bound to its port at the write's revision
        (allocation: ``new_endpoint``); the updates planned before it are written first (see
        the module docstring). A creation that fails takes back the revision bump it made."""
        assert item.ofport is not None
        self._flush()
        first = self.plan.revision is None
        try:
            with self.s.begin_nested() if self.many else nullcontext():
                revision = self._revision()
                assert isinstance(net, NetworkRow)  # read as a row when an item creates
                row, claimed = new_endpoint(
                    self.s, net, item.name, item.ip, target, item.labels or {}, self.now,
                    bind=(item.ofport, item.port_name, revision),
                )  # fmt: skip
        except BaseException:
            if first:
                self.plan.revision = None  # rolled back with the rest
            raise
        finally:
            self.notes[n] += changes.take(self.s)  # endpoint.created, before endpoint.bound
        if claimed:
            self._log(BLOCKS, item.network)
        ep = EndpointCols(
            row.id, row.network_id, row.name, row.ip, row.mac, target.id, item.ofport,
            item.port_name, row.state, revision, row.created_at, row.updated_at, None, None,
            dict(row.labels),
        )  # fmt: skip
        self.eps[(item.network, item.name)] = ep
        return ep

    # the plan

    def _free_port(self, ep: EndpointCols) -> None:
        if ep.host_id is not None and ep.ofport is not None:
            holder = self.ports.get((ep.host_id, ep.ofport))
            if holder is not None and holder[0] == ep.id:
                del self.ports[(ep.host_id, ep.ofport)]

    def _update(self, ep: EndpointCols) -> None:
        self.plan.updates.append({
            "_id": ep.id, "host_id": ep.host_id, "ofport": ep.ofport, "port_name": ep.port_name,
            "state": ep.state, "bound_rev": ep.bound_rev, "ready_at": ep.ready_at,
            "released_at": ep.released_at, "updated_at": ep.updated_at,
        })  # fmt: skip
        self.plan.labels.append(ep.labels)

    def _move(
        self, ep: EndpointCols, kind: str, host: str | None, from_host: str | None,
        ofport: int | None,
    ) -> None:  # fmt: skip
        assert self.plan.revision is not None
        self.plan.moves.append({
            "endpoint_id": ep.id, "kind": kind, "host": host, "from_host": from_host,
            "ofport": ofport, "revision": self.plan.revision, "at": self.now,
        })  # fmt: skip

    def _log(self, kind: str, key: str) -> None:
        self.plan.log[(kind, key)] = None

    def _flush(self) -> None:
        """Write what is planned so far: the endpoint UPDATE (in item order), the history and
        the change-log rows."""
        plan, s = self.plan, self.s
        if plan.updates:
            updates, plan.updates = plan.updates, []
            if plan.relabel:  # JSON per row: only when some item changes labels
                for update_, labels in zip(updates, plan.labels, strict=True):
                    update_["labels"] = labels
            plan.labels, plan.relabel = [], False
            try:
                s.execute(_UPDATE, updates)
            except IntegrityError as exc:
                if self.many:
                    raise
                item = self.items[0]
                if "ofport" in str(exc.orig):  # another endpoint was bound to the port meanwhile
                    raise port_taken(str(item.host), item.ofport or 0, "another endpoint") from exc
                raise NotFound(f"host {item.host!r} is not registered") from exc
            for u in updates:  # an ORM row of this endpoint in the session is stale now
                row = s.identity_map.get(identity_key(EndpointRow, u["_id"]))
                if row is not None:
                    s.expire(row)
        if plan.moves:
            moves, plan.moves = plan.moves, []
            s.execute(_INSERT_MOVES, moves)
        if plan.log:
            assert plan.revision is not None
            rows = [{"revision": plan.revision, "kind": k, "key": v} for k, v in plan.log]
            plan.log = {}
            s.execute(_INSERT_LOG, rows)


def _existing(session: Session, pairs: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of the (network, name) ``pairs`` exist, read without locks: a new name needs its
    network ``FOR UPDATE`` (allocation), an existing one only a share lock, so binds in one
    network run side by side on PostgreSQL. Under the locks the names are read again: a name
    seen here and gone there was deleted meanwhile (409, retry); a name created meanwhile by a
    concurrent attach is bound, not made twice."""
    query = (
        select(NetworkRow.name, EndpointRow.name)
        .join(NetworkRow, EndpointRow.network_id == NetworkRow.id)
        .where(
            NetworkRow.name.in_(sorted({n for n, _ in pairs})),
            EndpointRow.name.in_(sorted({e for _, e in pairs})),
        )
    )
    return {(n, e) for n, e in session.execute(query)} & pairs


def port_taken(host: str, ofport: int, by: str) -> Conflict:
    """The 409 of a bind to a port another endpoint holds."""
    return Conflict(
        f"ofport {ofport} of host {host!r} is bound to {by}: a port serves one endpoint "
        "(unbind that one first)"
    )


_NET_COLS = (
    NetworkRow.id, NetworkRow.name, NetworkRow.vni, NetworkRow.subnet, NetworkRow.gateway,
    NetworkRow.subnet6,
)  # fmt: skip
_HOST_COLS = (HostRow.id, HostRow.name, HostRow.last_seen, HostRow.tunnel_port)

_EP_COLS = (
    EndpointRow.id, EndpointRow.network_id, EndpointRow.name, EndpointRow.ip, EndpointRow.mac,
    EndpointRow.host_id, EndpointRow.ofport, EndpointRow.port_name, EndpointRow.state,
    EndpointRow.bound_rev, EndpointRow.created_at, EndpointRow.updated_at, EndpointRow.ready_at,
    EndpointRow.released_at, EndpointRow.labels,
)  # fmt: skip


def _table(row: type[Base]) -> Table:
    table = row.__table__
    assert isinstance(table, Table)
    return table


_T = _table(EndpointRow)
# On the tables, not the mapped classes: an ORM bulk INSERT of a list of rows processes each
# row in Python (12 % of the controller's samples in batches of 16, py-spy), Core does not.
_INSERT_MOVES = insert(_table(EndpointMoveRow))
_INSERT_LOG = insert(_table(ChangeRow))
# executemany: SET takes the parameters named as columns (host_id, ofport, ...), WHERE ``_id``
_UPDATE = update(_T).where(_T.c.id == bindparam("_id"))
